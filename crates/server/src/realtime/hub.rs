//! AppSync's subscription rule, implemented once for any schema.
//!
//! A subscription field lists mutations in `@aws_subscribe(mutations: [...])`: the server's
//! publish mutations (`chat_appsync::publish`), never a client's. When one of them
//! completes, its event (the whole object the server wrote) goes to every subscriber of
//! that field whose arguments equal the same-named fields of the event. Arguments left
//! out (or null) match anything; an argument the event does not carry matches nothing.
//!
//! Subscribers are indexed by (field, the names of the arguments they gave, the canonical
//! values of those arguments), so a publish costs one hash lookup per argument-name group,
//! not a scan of every connection.
//!
//! Each subscriber has a bounded queue. A publish never waits: when a queue is full the
//! subscriber is cut off (its queue closes while it is still registered) and its connection
//! is expected to close with a clear reason; senders and other subscribers are unaffected.
//! Over the WebSocket, a subscriber here is a subscription group (see [`super::groups`]):
//! one registration for every connection with that same subscription.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};
use tokio::sync::mpsc;

/// Events a subscriber may hold before it is considered too slow.
pub const SUBSCRIBER_QUEUE: usize = 256;

/// One subscription field's trigger list, read from the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSpec {
    pub field: String,
    pub mutations: Vec<String>,
}

/// An event on its way to subscribers. A subscriber's queue that closes while
/// its [`Registration`] is alive means the hub cut it off for falling behind.
pub type Event = Arc<Value>;

type Group = HashMap<String, HashMap<u64, mpsc::Sender<Event>>>;

#[derive(Default)]
struct Index {
    /// field -> argument names given (sorted) -> canonical values -> subscriber id -> queue
    fields: HashMap<String, BTreeMap<Vec<String>, Group>>,
}

pub struct Hub {
    /// mutation field -> subscription fields it triggers
    triggers: HashMap<String, Vec<String>>,
    index: RwLock<Index>,
    next_id: AtomicU64,
}

/// Canonical text of argument values, so that `1`, `1.0` and `"a"` compare as GraphQL does
/// after coercion (numbers by value, strings by text).
fn canonical(values: &[&Value]) -> String {
    let mut key = String::new();
    for value in values {
        match value {
            Value::Number(n) => match n.as_f64() {
                Some(f) => key.push_str(&format!("n{f}")),
                None => key.push_str(&format!("n{n}")),
            },
            Value::String(s) => {
                key.push('s');
                key.push_str(&s.len().to_string());
                key.push(':');
                key.push_str(s);
            }
            other => {
                key.push('j');
                key.push_str(&other.to_string());
            }
        }
        key.push('\u{1f}');
    }
    key
}

/// Unregisters its subscriber when dropped (the client completed, or the connection went).
pub struct Registration {
    hub: Arc<Hub>,
    field: String,
    names: Vec<String>,
    key: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut index = self.hub.index.write().unwrap_or_else(|e| e.into_inner());
        if let Some(groups) = index.fields.get_mut(&self.field)
            && let Some(group) = groups.get_mut(&self.names)
            && let Some(subscribers) = group.get_mut(&self.key)
        {
            subscribers.remove(&self.id);
            if subscribers.is_empty() {
                group.remove(&self.key);
            }
        }
    }
}

impl Hub {
    pub fn new(specs: &[SubscriptionSpec]) -> Arc<Hub> {
        let mut triggers: HashMap<String, Vec<String>> = HashMap::new();
        for spec in specs {
            for mutation in &spec.mutations {
                triggers
                    .entry(mutation.clone())
                    .or_default()
                    .push(spec.field.clone());
            }
        }
        Arc::new(Hub {
            triggers,
            index: RwLock::new(Index::default()),
            next_id: AtomicU64::new(1),
        })
    }

    /// Registers a subscriber of `field` with its (non-null) arguments.
    pub fn subscribe(
        self: &Arc<Self>,
        field: &str,
        args: &Map<String, Value>,
    ) -> (Registration, mpsc::Receiver<Event>) {
        let mut given: Vec<(&String, &Value)> = args.iter().filter(|(_, v)| !v.is_null()).collect();
        given.sort_by(|a, b| a.0.cmp(b.0));
        let names: Vec<String> = given.iter().map(|(k, _)| (*k).clone()).collect();
        let key = canonical(&given.iter().map(|(_, v)| *v).collect::<Vec<_>>());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            index
                .fields
                .entry(field.to_owned())
                .or_default()
                .entry(names.clone())
                .or_default()
                .entry(key.clone())
                .or_default()
                .insert(id, tx);
        }
        let registration = Registration {
            hub: self.clone(),
            field: field.to_owned(),
            names,
            key,
            id,
        };
        (registration, rx)
    }

    /// Delivers an event published through `mutation`. Returns how many subscribers got it.
    pub fn publish(&self, mutation: &str, event: Value) -> usize {
        let Some(fields) = self.triggers.get(mutation) else {
            return 0;
        };
        let event = Arc::new(event);
        let Value::Object(object) = &*event else {
            return 0;
        };
        let mut overflowed = Vec::new();
        let mut delivered = 0;
        {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            for field in fields {
                let Some(groups) = index.fields.get(field) else {
                    continue;
                };
                for (names, group) in groups {
                    let values: Option<Vec<&Value>> = names.iter().map(|n| object.get(n)).collect();
                    let Some(values) = values else {
                        continue; // the result lacks a filtered field: no match
                    };
                    let Some(subscribers) = group.get(&canonical(&values)) else {
                        continue;
                    };
                    for (id, queue) in subscribers {
                        match queue.try_send(event.clone()) {
                            Ok(()) => delivered += 1,
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                overflowed.push((field.clone(), names.clone(), *id));
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => {}
                        }
                    }
                }
            }
        }
        if !overflowed.is_empty() {
            self.cut_off(overflowed);
        }
        delivered
    }

    /// Removes subscribers that fell behind and tells them so.
    fn cut_off(&self, who: Vec<(String, Vec<String>, u64)>) {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        for (field, names, id) in who {
            let Some(group) = index.fields.get_mut(&field).and_then(|g| g.get_mut(&names)) else {
                continue;
            };
            for subscribers in group.values_mut() {
                if subscribers.remove(&id).is_some() {
                    // Dropping the sender closes the queue after the events already in it.
                    tracing::warn!(field, id, "subscriber fell behind: disconnecting it");
                }
            }
        }
    }

    /// Subscribers currently registered (for tests and metrics).
    pub fn subscriber_count(&self) -> usize {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index
            .fields
            .values()
            .flat_map(|groups| groups.values())
            .flat_map(|group| group.values())
            .map(HashMap::len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hub() -> Arc<Hub> {
        Hub::new(&[
            SubscriptionSpec {
                field: "onMessage".into(),
                mutations: vec!["sendMessage".into(), "editMessage".into()],
            },
            SubscriptionSpec {
                field: "onInbox".into(),
                mutations: vec!["sendMessage".into()],
            },
        ])
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn data(rx: &mut mpsc::Receiver<Event>) -> Option<Value> {
        rx.try_recv().ok().map(|v| (*v).clone())
    }

    #[test]
    fn delivers_to_subscribers_whose_arguments_equal_the_result_fields() {
        let hub = hub();
        let (_a, mut chat1) = hub.subscribe(
            "onMessage",
            &args(json!({"appToken": "A", "chatNumber": 1})),
        );
        let (_b, mut chat2) = hub.subscribe(
            "onMessage",
            &args(json!({"appToken": "A", "chatNumber": 2})),
        );
        let (_c, mut other_app) = hub.subscribe(
            "onMessage",
            &args(json!({"appToken": "B", "chatNumber": 1})),
        );
        let (_d, mut inbox) = hub.subscribe("onInbox", &args(json!({"appToken": "A"})));
        let (_e, mut wildcard) = hub.subscribe(
            "onMessage",
            &args(json!({"appToken": "A", "chatNumber": null})),
        );

        let sent = json!({"appToken": "A", "chatNumber": 1, "number": 7});
        assert_eq!(hub.publish("sendMessage", sent.clone()), 3);

        assert_eq!(data(&mut chat1), Some(sent.clone()));
        assert_eq!(data(&mut chat2), None);
        assert_eq!(data(&mut other_app), None);
        assert_eq!(data(&mut inbox), Some(sent.clone()));
        assert_eq!(data(&mut wildcard), Some(sent));
        // editMessage triggers onMessage only.
        assert_eq!(
            hub.publish("editMessage", json!({"appToken": "A", "chatNumber": 1})),
            2
        );
        assert_eq!(data(&mut inbox), None);
        assert_eq!(hub.publish("createChat", json!({"appToken": "A"})), 0);
    }

    #[test]
    fn a_result_without_the_filtered_field_matches_nothing() {
        let hub = hub();
        let (_a, mut rx) = hub.subscribe(
            "onMessage",
            &args(json!({"appToken": "A", "chatNumber": 1})),
        );
        assert_eq!(
            hub.publish("sendMessage", json!({"appToken": "A", "number": 1})),
            0
        );
        assert!(data(&mut rx).is_none());
    }

    #[test]
    fn dropping_the_registration_unsubscribes() {
        let hub = hub();
        let (registration, _rx) = hub.subscribe("onInbox", &args(json!({"appToken": "A"})));
        assert_eq!(hub.subscriber_count(), 1);
        drop(registration);
        assert_eq!(hub.subscriber_count(), 0);
        assert_eq!(hub.publish("sendMessage", json!({"appToken": "A"})), 0);
    }

    #[test]
    fn a_full_queue_cuts_that_subscriber_off_without_blocking_others() {
        let hub = hub();
        let (_slow, mut slow) = hub.subscribe("onInbox", &args(json!({"appToken": "A"})));
        let (_fast, mut fast) = hub.subscribe("onInbox", &args(json!({"appToken": "A"})));
        for n in 0..SUBSCRIBER_QUEUE {
            hub.publish("sendMessage", json!({"appToken": "A", "number": n}));
            assert!(data(&mut fast).is_some());
        }
        // The slow one's queue is full: the next publish drops it, the fast one still gets it.
        assert_eq!(
            hub.publish("sendMessage", json!({"appToken": "A", "number": -1})),
            1
        );
        assert!(data(&mut fast).is_some());
        assert_eq!(hub.subscriber_count(), 1);
        let mut received = 0;
        while data(&mut slow).is_some() {
            received += 1;
        }
        assert_eq!(received, SUBSCRIBER_QUEUE);
        assert!(matches!(
            slow.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }
}

//! Subscription groups: subscribers whose subscriptions are identical share one execution.
//!
//! Two subscriptions with the same query text, operation name and variables have the same
//! arguments and the same selection, so every event renders to the same response for both.
//! A group runs that subscription ONCE (one async-graphql stream, one hub registration per
//! root field), renders each response once to JSON text ([`Payload`]) and hands the same
//! `Arc` to every member. A member costs a bounded queue, not an execution.
//!
//! Guarantees, as for a subscription of its own:
//! - Every subscriber is admitted individually before it joins: an admission run executes
//!   its request with ITS caller, so validation and the authorization of each root field
//!   (`Subscription.<field>` in the registry, with the arguments after variable
//!   substitution) are exactly those of a standalone subscription, with the same errors.
//!   The group's own execution then authorizes nobody: it only renders.
//! - Live on return: the group registers with the hub before [`Groups::subscribe`] returns,
//!   and a joiner is added under the registry's lock, so every event published after the
//!   subscribe returned reaches it, once, in order.
//! - The group task never waits on a member: it `try_send`s to bounded queues; a member
//!   whose queue is full is cut off (its queue closes after the events already in it and
//!   its connection is told it fell behind), the group and the other members go on.
//! - A group that produced an error response takes no new members (they get a fresh
//!   execution of their own), so nobody joins a group that failed.
//! - The group ends, and leaves the registry, when its last member leaves or its stream
//!   ends (members then complete, or fall behind if the hub cut the group off).
//!
//! Memory: a group costs one execution; a member a queue that allocates as it fills. (A
//! `tokio::sync::broadcast` ring would allocate its whole capacity per group up front,
//! about 10 KiB, which many one-member groups, e.g. a customer on its own chat, would pay.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_graphql::dynamic::Schema;
use async_graphql::{Request, Response, Variables};
use chat_domain::Caller;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc};

use super::hub::{Event, Hub, Registration};
use super::{ConnectionSignals, Payload};

/// Responses a member may hold before it is considered too slow.
pub const MEMBER_QUEUE: usize = 256;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Request data of an admission run: each subscription field authorizes the caller,
/// records its arguments, and streams nothing.
#[derive(Default)]
pub(crate) struct Admission(Mutex<Vec<(String, Map<String, Value>)>>);

impl Admission {
    pub fn record(&self, field: String, args: Map<String, Value>) {
        lock(&self.0).push((field, args));
    }

    fn take(&self) -> Vec<(String, Map<String, Value>)> {
        std::mem::take(&mut *lock(&self.0))
    }
}

/// One root field's hub registration, made for a group before its execution started.
struct Registered {
    field: String,
    args: Map<String, Value>,
    registration: Registration,
    events: mpsc::Receiver<Event>,
}

/// Request data of a group's execution: its hub registrations, made before the execution
/// started (so the group was live from the moment it was created).
#[derive(Default)]
pub(crate) struct GroupFeed(Mutex<Vec<Registered>>);

impl GroupFeed {
    /// The registration made for this root field, if any.
    pub fn take(
        &self,
        field: &str,
        args: &Map<String, Value>,
    ) -> Option<(Registration, mpsc::Receiver<Event>)> {
        let mut feed = lock(&self.0);
        let at = feed
            .iter()
            .position(|r| r.field == field && r.args == *args)?;
        let registered = feed.swap_remove(at);
        Some((registered.registration, registered.events))
    }
}

/// What makes two subscriptions identical.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    query: String,
    operation_name: Option<String>,
    /// Canonical JSON (object keys sorted).
    variables: String,
    /// Set when a response could depend on who asks (see [`Groups::new`]).
    caller: Option<String>,
}

fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The group side of a member: its queue and whether it was cut off.
struct MemberTx {
    queue: mpsc::Sender<Arc<Payload>>,
    cut: Arc<AtomicBool>,
}

#[derive(Default)]
struct Members {
    /// No more responses: the members' queues were closed.
    closed: bool,
    list: HashMap<u64, MemberTx>,
}

struct Group {
    id: u64,
    key: Key,
    members: Mutex<Members>,
    /// Set when the last member left: the group task ends.
    stop: Notify,
    /// The group's own signals: set when the hub cut the group off.
    signals: ConnectionSignals,
}

impl Group {
    /// Hands a response to every member, never waiting. Returns whether members remain.
    fn fan_out(&self, payload: &Arc<Payload>) -> bool {
        let mut members = lock(&self.members);
        members
            .list
            .retain(|id, member| match member.queue.try_send(payload.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(member = id, "subscriber fell behind: disconnecting it");
                    member.cut.store(true, Ordering::SeqCst);
                    false // dropping the sender closes the queue after what is in it
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        !members.list.is_empty()
    }

    /// Closes every member's queue (after what is already in it).
    fn close(&self, fell_behind: bool) {
        let mut members = lock(&self.members);
        members.closed = true;
        for (_, member) in members.list.drain() {
            if fell_behind {
                member.cut.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// The registry of live groups, owned by [`crate::schema::Api`] next to the hub.
pub struct Groups {
    hub: Arc<Hub>,
    per_caller: bool,
    groups: Mutex<HashMap<Key, Arc<Group>>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups")
            .field("groups", &self.group_count())
            .field("members", &self.member_count())
            .finish()
    }
}

impl Groups {
    /// `per_caller`: whether a response may depend on the caller beyond the subscribe-time
    /// authorization (a field below the subscription's root resolved by the registry with
    /// the caller's identity). Then only subscriptions of the same caller share a group.
    pub fn new(hub: Arc<Hub>, per_caller: bool) -> Arc<Groups> {
        Arc::new(Groups {
            hub,
            per_caller,
            groups: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// Groups currently running (for tests and metrics).
    pub fn group_count(&self) -> usize {
        lock(&self.groups).len()
    }

    /// Subscribers in running groups (for tests and metrics).
    pub fn member_count(&self) -> usize {
        lock(&self.groups)
            .values()
            .map(|g| lock(&g.members).list.len())
            .sum()
    }

    /// Admits `caller`'s subscription and adds it to the group of identical ones (creating
    /// it if needed). The stream yields the group's rendered responses; a refusal is one
    /// response with errors and no data. When the stream ends because the subscriber fell
    /// behind, `signals` is told first.
    pub async fn subscribe(
        self: &Arc<Self>,
        schema: &Schema,
        request: Request,
        caller: Caller,
        signals: ConnectionSignals,
    ) -> BoxStream<'static, Arc<Payload>> {
        let Request {
            query,
            operation_name,
            variables,
            ..
        } = request;
        let request = |caller: &Caller| {
            let mut request = Request::new(query.clone()).variables(variables.clone());
            request.operation_name = operation_name.clone();
            request.data(caller.clone())
        };

        // Admission: this caller's own validation and authorization.
        let admission = Arc::new(Admission::default());
        let refusal = schema
            .execute_stream(request(&caller).data(admission.clone()))
            .next()
            .await;
        if let Some(response) = refusal {
            let payload = Payload::render(response);
            return futures::stream::once(async move { payload }).boxed();
        }
        let fields = admission.take();

        let key = Key {
            variables: canonical_variables(&variables),
            query: query.clone(),
            operation_name: operation_name.clone(),
            caller: self.per_caller.then(|| format!("{caller:?}")),
        };
        let (queue, cut) = (
            mpsc::channel(MEMBER_QUEUE),
            Arc::new(AtomicBool::new(false)),
        );
        let member_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let member = MemberTx {
            queue: queue.0,
            cut: cut.clone(),
        };
        let (group, created) = {
            let mut groups = lock(&self.groups);
            // A listed group is not closed: it leaves the registry (under this lock)
            // before its members' queues close.
            let joined = groups.get(&key).cloned();
            match joined {
                Some(group) => {
                    lock(&group.members).list.insert(member_id, member);
                    (group, None)
                }
                None => {
                    // Registered with the hub before anyone can observe the group.
                    let feed = GroupFeed::default();
                    for (field, args) in fields {
                        let (registration, events) = self.hub.subscribe(&field, &args);
                        lock(&feed.0).push(Registered {
                            field,
                            args,
                            registration,
                            events,
                        });
                    }
                    let group = Arc::new(Group {
                        id: self.next_id.fetch_add(1, Ordering::Relaxed),
                        key: key.clone(),
                        members: Mutex::new(Members::default()),
                        stop: Notify::new(),
                        signals: ConnectionSignals::default(),
                    });
                    lock(&group.members).list.insert(member_id, member);
                    groups.insert(key, group.clone());
                    (group, Some(feed))
                }
            }
        };
        if let Some(feed) = created {
            let execution = schema.execute_stream(
                request(&caller)
                    .data(Arc::new(feed))
                    .data(group.signals.clone()),
            );
            tokio::spawn(run(self.clone(), group.clone(), execution));
        }

        let membership = Membership {
            groups: self.clone(),
            group,
            id: member_id,
        };
        futures::stream::unfold(
            (queue.1, membership, cut, signals),
            |(mut queue, membership, cut, signals)| async move {
                match queue.recv().await {
                    Some(payload) => Some((payload, (queue, membership, cut, signals))),
                    None => {
                        if cut.load(Ordering::SeqCst) {
                            signals.fell_behind();
                        }
                        None
                    }
                }
            },
        )
        .boxed()
    }

    /// Takes the group out of the registry (it takes no new members).
    fn unlist(&self, group: &Group) {
        let mut groups = lock(&self.groups);
        if groups.get(&group.key).is_some_and(|g| g.id == group.id) {
            groups.remove(&group.key);
        }
    }

    /// Ends the group if it has no member left; returns whether it did.
    fn retire_if_empty(&self, group: &Group) -> bool {
        let mut groups = lock(&self.groups);
        let mut members = lock(&group.members);
        if !members.list.is_empty() || members.closed {
            return false;
        }
        members.closed = true;
        if groups.get(&group.key).is_some_and(|g| g.id == group.id) {
            groups.remove(&group.key);
        }
        group.stop.notify_one();
        true
    }
}

fn canonical_variables(variables: &Variables) -> String {
    let json = variables
        .clone()
        .into_value()
        .into_json()
        .unwrap_or(Value::Null);
    let mut out = String::new();
    canonical_json(&json, &mut out);
    out
}

/// A member's place in its group; leaving when dropped (completed, or connection gone).
struct Membership {
    groups: Arc<Groups>,
    group: Arc<Group>,
    id: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        lock(&self.group.members).list.remove(&self.id);
        self.groups.retire_if_empty(&self.group);
    }
}

/// Ends a group however its task ends (panics included): out of the registry, members'
/// queues closed.
struct Ending {
    groups: Arc<Groups>,
    group: Arc<Group>,
}

impl Drop for Ending {
    fn drop(&mut self) {
        self.groups.unlist(&self.group);
        self.group.close(self.group.signals.is_behind());
    }
}

/// The group task: one execution, each response rendered once and handed to every member.
async fn run(groups: Arc<Groups>, group: Arc<Group>, mut execution: BoxStream<'static, Response>) {
    let _ending = Ending {
        groups: groups.clone(),
        group: group.clone(),
    };
    loop {
        let response = tokio::select! {
            biased;
            _ = group.stop.notified() => break,
            response = execution.next() => response,
        };
        let Some(response) = response else { break };
        if !response.errors.is_empty() {
            // A group that failed (or whose stream is about to end) takes nobody new.
            groups.unlist(&group);
        }
        let payload = Payload::render(response);
        if !group.fan_out(&payload) && groups.retire_if_empty(&group) {
            break;
        }
    }
    // The execution (and with it the hub registrations) goes before the members learn of
    // the end.
    drop(execution);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_object_keys_at_every_level() {
        let mut a = String::new();
        canonical_json(
            &json!({"b": 1, "a": {"d": [1, {"y": 2, "x": 1}], "c": "s"}}),
            &mut a,
        );
        assert_eq!(a, r#"{"a":{"c":"s","d":[1,{"x":1,"y":2}]},"b":1}"#);
    }
}

//! Real-time events cannot be forged: whatever shape a caller gives its mutation (aliases
//! over the fields that route events, fragments, other applications' tokens in its
//! arguments), every event goes to exactly the subscribers that the committed write
//! designates, and carries the committed values.
//!
//! The property runs in process on the dev server's `Api` (the one path both WebSocket
//! protocols deliver from), over the mutations the registry says publish and the fields
//! `schema.graphql` gives their results, with random selections (seeded: a failure prints
//! its seed; `CHAT_PROPERTY_SEED` replays it, `CHAT_PROPERTY_CASES` runs more). The
//! reproduction from the security report runs verbatim over both protocols against a started
//! server in `realtime.rs` and `appsync_realtime.rs`.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Request, Variables};
use async_graphql_parser::types::{BaseType, TypeKind, TypeSystemDefinition};
use chat_appsync::Registry;
use chat_domain::{
    AppToken, Caller, ChatService, Role, ServerKey, SystemClock, UserId, UserIdentity,
};
use chat_embedded::SqliteStore;
use chat_server::realtime::{ConnectionSignals, Payload};
use chat_server::schema::{Api, SCHEMA_SDL};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

fn user(app: &str, id: &str, role: Role) -> Caller {
    Caller::User(UserIdentity {
        app: AppToken::parse(app).unwrap(),
        user_id: UserId::parse(id).unwrap(),
        role,
    })
}

async fn run(api: &Api, caller: &Caller, query: &str, variables: Value) -> Value {
    let request = Request::new(query).variables(Variables::from_json(variables));
    let response = api.execute(request, caller.clone()).await;
    serde_json::to_value(&response).unwrap()
}

async fn ok(api: &Api, caller: &Caller, query: &str, variables: Value) -> Value {
    let answer = run(api, caller, query, variables).await;
    assert!(answer.get("errors").is_none(), "{query}: {answer}");
    answer["data"].clone()
}

/// The fields of each object type of `schema.graphql`, with whether each is an object.
fn object_fields() -> std::collections::HashMap<String, Vec<(String, bool)>> {
    let document = async_graphql_parser::parse_schema(SCHEMA_SDL).unwrap();
    let mut objects = std::collections::HashMap::new();
    let mut names = Vec::new();
    for definition in &document.definitions {
        if let TypeSystemDefinition::Type(ty) = definition
            && let TypeKind::Object(_) = ty.node.kind
        {
            names.push(ty.node.name.node.to_string());
        }
    }
    for definition in document.definitions {
        let TypeSystemDefinition::Type(ty) = definition else {
            continue;
        };
        let TypeKind::Object(object) = ty.node.kind else {
            continue;
        };
        let fields = object
            .fields
            .iter()
            .map(|f| {
                let named = match &f.node.ty.node.base {
                    BaseType::Named(name) => name.to_string(),
                    BaseType::List(_) => String::new(),
                };
                (f.node.name.node.to_string(), names.contains(&named))
            })
            .collect();
        objects.insert(ty.node.name.node.to_string(), fields);
    }
    objects
}

/// The return type of each Mutation field.
fn mutation_types() -> std::collections::HashMap<String, String> {
    let document = async_graphql_parser::parse_schema(SCHEMA_SDL).unwrap();
    let mut types = std::collections::HashMap::new();
    for definition in document.definitions {
        let TypeSystemDefinition::Type(ty) = definition else {
            continue;
        };
        if ty.node.name.node != "Mutation" {
            continue;
        }
        let TypeKind::Object(object) = ty.node.kind else {
            continue;
        };
        for f in object.fields {
            if let BaseType::Named(name) = &f.node.ty.node.base {
                types.insert(f.node.name.node.to_string(), name.to_string());
            }
        }
    }
    types
}

/// The two applications, their callers, and every subscription of both.
struct World {
    api: Api,
    apps: [String; 2],
    subscribers: Vec<Subscriber>,
}

struct Subscriber {
    /// e.g. `onMessage(A,1)`.
    name: String,
    stream: BoxStream<'static, Arc<Payload>>,
}

const SUBSCRIPTIONS: [(&str, &str); 8] = [
    (
        "onMessage",
        "subscription($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { appToken chatNumber number body senderId } }",
    ),
    (
        "onInboxMessage",
        "subscription($a: ID!) { onInboxMessage(appToken: $a) { appToken chatNumber number body } }",
    ),
    (
        "onChat",
        "subscription($a: ID!) { onChat(appToken: $a) { appToken number subject customerId } }",
    ),
    (
        "onReadReceipt",
        "subscription($a: ID!, $c: Int!) { onReadReceipt(appToken: $a, chatNumber: $c) { appToken chatNumber readerId lastReadNumber } }",
    ),
    (
        "onPresence",
        "subscription($a: ID!) { onPresence(appToken: $a) { appToken userId status chatNumber } }",
    ),
    (
        "onAvailability",
        "subscription($a: ID!) { onAvailability(appToken: $a) { appToken agentsOnline } }",
    ),
    (
        "onChatViewer",
        "subscription($a: ID!, $c: Int!) { onChatViewer(appToken: $a, chatNumber: $c) { appToken chatNumber userId viewing } }",
    ),
    (
        "onTyping",
        "subscription($a: ID!, $c: Int!) { onTyping(appToken: $a, chatNumber: $c) { appToken chatNumber userId } }",
    ),
];

async fn world() -> World {
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    let service = ChatService::new(store, ServerKey::generate(), Arc::new(SystemClock))
        .with_presence(Arc::new(chat_embedded::MemoryPresence::new()));
    let api = chat_server::schema::build(Arc::new(Registry::new(Arc::new(service)))).unwrap();
    let mut apps = Vec::new();
    for name in ["A", "B"] {
        let data = ok(
            &api,
            &Caller::Admin,
            "mutation($n: String!) { createApplication(name: $n) { application { token } } }",
            json!({ "n": name }),
        )
        .await;
        let app = data["createApplication"]["application"]["token"]
            .as_str()
            .unwrap()
            .to_owned();
        // Chat 1 of customer c1 and chat 2 of customer c2, a message in each.
        for customer in ["c1", "c2"] {
            let caller = user(&app, customer, Role::Customer);
            let chat = ok(
                &api,
                &caller,
                "mutation($a: ID!) { createChat(appToken: $a) { number } }",
                json!({ "a": app }),
            )
            .await;
            let number = chat["createChat"]["number"].clone();
            ok(
                &api,
                &caller,
                "mutation($a: ID!, $c: Int!) { sendMessage(appToken: $a, chatNumber: $c, body: \"hello\") { number } }",
                json!({ "a": app, "c": number }),
            )
            .await;
        }
        apps.push(app);
    }
    let apps: [String; 2] = apps.try_into().unwrap();
    let mut subscribers = Vec::new();
    for (label, app) in ["A", "B"].iter().zip(&apps) {
        let agent = user(app, "agent", Role::Agent);
        for (field, query) in SUBSCRIPTIONS {
            let chats: &[Option<i64>] = if query.contains("$c") {
                &[Some(1), Some(2)]
            } else {
                &[None]
            };
            for chat in chats {
                let mut variables = json!({ "a": app });
                let mut name = format!("{field}({label}");
                if let Some(chat) = chat {
                    variables["c"] = json!(chat);
                    name.push_str(&format!(",{chat}"));
                }
                name.push(')');
                let request = Request::new(query).variables(Variables::from_json(variables));
                let (_, stream) = api
                    .execute_stream(request, agent.clone(), ConnectionSignals::default())
                    .await;
                subscribers.push(Subscriber { name, stream });
            }
        }
    }
    World {
        api,
        apps,
        subscribers,
    }
}

/// A random selection over `ty`'s fields: aliases drawn from the routing fields and other
/// fields' names, plain, in an inline fragment or in a named fragment.
fn selection(
    rng: &mut StdRng,
    ty: &str,
    objects: &std::collections::HashMap<String, Vec<(String, bool)>>,
    fragments: &mut Vec<String>,
) -> String {
    let fields = &objects[ty];
    let poison = ["appToken", "chatNumber", "number", "customerId", "readerId"];
    let mut items = Vec::new();
    let mut used_keys = std::collections::HashSet::new();
    for _ in 0..rng.random_range(1..=6) {
        let (field, is_object) = &fields[rng.random_range(0..fields.len())];
        let key = match rng.random_range(0..3) {
            0 => field.clone(),
            1 => poison[rng.random_range(0..poison.len())].to_owned(),
            _ => fields[rng.random_range(0..fields.len())].0.clone(),
        };
        // Two different fields under one response key do not validate: keep keys unique.
        if !used_keys.insert(key.clone()) {
            continue;
        }
        let sub = if *is_object { " { number body }" } else { "" };
        if key == *field {
            items.push(format!("{field}{sub}"));
        } else {
            items.push(format!("{key}: {field}{sub}"));
        }
    }
    let items = items.join(" ");
    match rng.random_range(0..3) {
        0 => items,
        1 => format!("... on {ty} {{ {items} }}"),
        _ => {
            let name = format!("F{}", fragments.len());
            fragments.push(format!("fragment {name} on {ty} {{ {items} }}"));
            format!("...{name} __typename")
        }
    }
}

/// One write by application B's (or, `inside`, application A's customer c1's) caller with a
/// random selection; the subscribers the committed write designates.
struct Case {
    document: String,
    variables: Value,
    caller: Caller,
    expected: Vec<String>,
    /// (field, value) every delivered event must carry.
    committed: Vec<(&'static str, Value)>,
}

fn case(rng: &mut StdRng, world: &World, mutation: &str, inside: bool) -> Case {
    let objects = object_fields();
    let types = mutation_types();
    let (victim, attacker) = (&world.apps[0], &world.apps[1]);
    // Across applications: B's users on B's chat 1, with A's token in every free argument.
    // Inside one: A's customer c1 on its chat 1, trying to reach chat 2.
    let (app, label) = if inside {
        (victim, "A")
    } else {
        (attacker, "B")
    };
    let customer = user(app, "c1", Role::Customer);
    let agent = user(app, "agent", Role::Agent);
    let mut fragments = Vec::new();
    let ty = &types[mutation];
    let picked = selection(rng, ty, &objects, &mut fragments);
    let poison_text = if inside {
        "2".to_owned()
    } else {
        victim.clone()
    };
    let (call, variables, caller, expected, committed): (String, Value, Caller, Vec<String>, _) =
        match mutation {
            "sendMessage" => (
                "sendMessage(appToken: $app, chatNumber: 1, body: $text, clientMessageId: $text)"
                    .into(),
                json!({ "app": app, "text": poison_text }),
                customer,
                vec![
                    format!("onMessage({label},1)"),
                    format!("onInboxMessage({label})"),
                ],
                vec![("appToken", json!(app)), ("chatNumber", json!(1))],
            ),
            "editMessage" => (
                "editMessage(appToken: $app, chatNumber: 1, number: 1, body: $text)".into(),
                json!({ "app": app, "text": poison_text }),
                customer,
                vec![format!("onMessage({label},1)")],
                vec![
                    ("appToken", json!(app)),
                    ("chatNumber", json!(1)),
                    ("number", json!(1)),
                ],
            ),
            "deleteMessage" => (
                "deleteMessage(appToken: $app, chatNumber: 1, number: 1)".into(),
                json!({ "app": app }),
                agent,
                vec![format!("onMessage({label},1)")],
                vec![
                    ("appToken", json!(app)),
                    ("chatNumber", json!(1)),
                    ("number", json!(1)),
                ],
            ),
            "createChat" => (
                "createChat(appToken: $app, subject: $text)".into(),
                json!({ "app": app, "text": poison_text }),
                customer,
                vec![format!("onChat({label})")],
                vec![("appToken", json!(app)), ("customerId", json!("c1"))],
            ),
            "updateChat" => (
                "updateChat(appToken: $app, number: 1, subject: $text)".into(),
                json!({ "app": app, "text": poison_text }),
                agent,
                vec![format!("onChat({label})")],
                vec![("appToken", json!(app)), ("number", json!(1))],
            ),
            "assignChat" => (
                format!(
                    "assignChat(appToken: $app, chatNumber: 1, assignee: \"agent-{}\")",
                    rng.random::<u32>()
                ),
                json!({ "app": app }),
                agent,
                vec![format!("onChat({label})")],
                vec![("appToken", json!(app)), ("number", json!(1))],
            ),
            "markChatRead" => (
                "markChatRead(appToken: $app, chatNumber: 1)".into(),
                json!({ "app": app }),
                customer,
                vec![format!("onReadReceipt({label},1)")],
                vec![
                    ("appToken", json!(app)),
                    ("chatNumber", json!(1)),
                    ("readerId", json!("c1")),
                ],
            ),
            // A new agent each time, so that every heartbeat is a transition (its first) and
            // no typing call is folded into an earlier one.
            "heartbeat" => (
                "heartbeat(appToken: $app, chatNumber: 1)".into(),
                json!({ "app": app }),
                user(app, &format!("agent-{}", rng.random::<u64>()), Role::Agent),
                vec![
                    format!("onPresence({label})"),
                    format!("onChatViewer({label},1)"),
                    format!("onAvailability({label})"),
                ],
                vec![("appToken", json!(app)), ("chatNumber", json!(1))],
            ),
            "typing" => (
                "typing(appToken: $app, chatNumber: 1)".into(),
                json!({ "app": app }),
                user(app, &format!("agent-{}", rng.random::<u64>()), Role::Agent),
                vec![format!("onTyping({label},1)")],
                vec![("appToken", json!(app)), ("chatNumber", json!(1))],
            ),
            // Publishes only the chats routing picks up when it opens routing; here routing
            // stays off, so a rename designates no subscriber.
            "updateApplication" => (
                "updateApplication(token: $app, name: $text)".into(),
                json!({ "app": app, "text": "Renamed" }),
                Caller::Admin,
                Vec::new(),
                Vec::new(),
            ),
            other => panic!("a publishing mutation this test does not know: {other}"),
        };
    let declared: String = [("$app", "ID!"), ("$text", "String")]
        .iter()
        .filter(|(name, _)| call.contains(name))
        .map(|(name, ty)| format!("{name}: {ty}"))
        .collect::<Vec<_>>()
        .join(", ");
    let alias = if rng.random_bool(0.5) {
        "appToken: "
    } else {
        ""
    };
    let mut document = format!("mutation({declared}) {{ {alias}{call} {{ {picked} }} }}");
    for fragment in fragments {
        document.push(' ');
        document.push_str(&fragment);
    }
    Case {
        document,
        variables,
        caller,
        expected,
        committed,
    }
}

/// What each subscriber received within a short while after the write.
async fn deliveries(world: &mut World, expected: &[String]) -> Vec<(String, Value)> {
    let mut got = Vec::new();
    // The designated subscribers first (each within 5 s), then a moment for any stray event.
    for subscriber in world.subscribers.iter_mut() {
        if expected.contains(&subscriber.name) {
            let payload = tokio::time::timeout(Duration::from_secs(5), subscriber.stream.next())
                .await
                .unwrap_or_else(|_| panic!("{} received nothing", subscriber.name))
                .expect("stream open");
            got.push((
                subscriber.name.clone(),
                serde_json::from_str(&payload.response).unwrap(),
            ));
        }
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    for subscriber in world.subscribers.iter_mut() {
        while let Some(Some(payload)) = subscriber.stream.next().now_or_never() {
            got.push((
                subscriber.name.clone(),
                serde_json::from_str(&payload.response).unwrap(),
            ));
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_selection_shape_delivers_only_to_the_subscribers_the_write_designates() {
    let seed: u64 = std::env::var("CHAT_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let cases: usize = std::env::var("CHAT_PROPERTY_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut world = world().await;
    // The mutations that publish, from the registry; every one is exercised.
    let registry_publishing: Vec<String> = {
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let registry = Registry::new(Arc::new(ChatService::new(
            store,
            ServerKey::generate(),
            Arc::new(SystemClock),
        )));
        registry
            .fields()
            .filter(|f| !registry.publishes(f).is_empty())
            .filter_map(|f| f.strip_prefix("Mutation.").map(str::to_owned))
            .collect()
    };
    assert!(registry_publishing.len() >= 6, "{registry_publishing:?}");
    let mut delivered = 0;
    for n in 0..cases.max(registry_publishing.len() * 2) {
        let mutation = &registry_publishing[n % registry_publishing.len()];
        let inside = n % 2 == 1;
        let case = case(&mut rng, &world, mutation, inside);
        let answer = run(
            &world.api,
            &case.caller,
            &case.document,
            case.variables.clone(),
        )
        .await;
        let executed = answer["data"].is_object();
        let expected = if executed {
            case.expected.clone()
        } else {
            Vec::new()
        };
        let got = deliveries(&mut world, &expected).await;
        let receivers: Vec<&String> = got.iter().map(|(name, _)| name).collect();
        let mut wanted: Vec<&String> = expected.iter().collect();
        let mut sorted = receivers.clone();
        sorted.sort();
        wanted.sort();
        assert_eq!(
            sorted, wanted,
            "seed {seed}, case {n}: {}\nvariables {}\nanswer {answer}",
            case.document, case.variables
        );
        for (name, event) in &got {
            let object = event["data"].as_object().unwrap().values().next().unwrap();
            for (field, value) in &case.committed {
                if let Some(received) = object.get(*field) {
                    assert_eq!(
                        received, value,
                        "seed {seed}, case {n}: {name} got {event} for {}",
                        case.document
                    );
                }
            }
        }
        delivered += got.len();
    }
    assert!(delivered > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_call_the_publish_mutations_and_nothing_is_delivered() {
    let mut world = world().await;
    let a = world.apps[0].clone();
    for caller in [
        Caller::Admin,
        user(&a, "agent", Role::Agent),
        user(&a, "c1", Role::Customer),
        Caller::Anonymous,
    ] {
        for (mutation, input) in chat_appsync::publish::MUTATIONS {
            let document = chat_appsync::publish::document(mutation).unwrap();
            let variables = json!({ "event": common::publish_event(input, &a) });
            let answer = run(&world.api, &caller, &document, variables).await;
            assert_eq!(answer["data"][mutation], Value::Null, "{answer}");
            let error = &answer["errors"][0];
            assert_eq!(
                error["extensions"]["code"], "Unauthorized",
                "{caller:?}: {answer}"
            );
            assert_eq!(
                error["message"],
                format!("Not Authorized to access {mutation} on type Mutation")
            );
        }
    }
    assert!(deliveries(&mut world, &[]).await.is_empty());
}

/// The documents the Lambda functions publish with are valid against `schema.graphql`, their
/// selection is the whole object (the answer is the event, field for field), and a publish
/// with IAM authority reaches the subscribers the event designates, as on AppSync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_iam_authority_a_publish_document_round_trips_and_is_delivered() {
    let mut world = world().await;
    let a = world.apps[0].clone();
    let expected = [
        (
            "publishMessageSent",
            vec!["onMessage(A,1)", "onInboxMessage(A)"],
        ),
        ("publishMessageChanged", vec!["onMessage(A,1)"]),
        ("publishChat", vec!["onChat(A)"]),
        ("publishReadReceipt", vec!["onReadReceipt(A,1)"]),
        ("publishPresence", vec!["onPresence(A)"]),
        ("publishAvailability", vec!["onAvailability(A)"]),
        ("publishChatViewer", vec!["onChatViewer(A,1)"]),
        ("publishTyping", vec!["onTyping(A,1)"]),
    ];
    for (mutation, input) in chat_appsync::publish::MUTATIONS {
        let document = chat_appsync::publish::document(mutation).unwrap();
        let event = common::publish_event(input, &a);
        let request = Request::new(document)
            .variables(Variables::from_json(json!({ "event": event })))
            .data(chat_server::schema::IamAuthority);
        let answer =
            serde_json::to_value(world.api.execute(request, Caller::Anonymous).await).unwrap();
        assert!(answer.get("errors").is_none(), "{mutation}: {answer}");
        assert_eq!(
            answer["data"][mutation], event,
            "{mutation}: every field, as given"
        );
        let wanted: Vec<String> = expected
            .iter()
            .find(|(m, _)| *m == mutation)
            .unwrap()
            .1
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let got = deliveries(&mut world, &wanted).await;
        let mut names: Vec<String> = got.into_iter().map(|(name, _)| name).collect();
        names.sort();
        let mut wanted = wanted;
        wanted.sort();
        assert_eq!(names, wanted, "{mutation}");
    }
}

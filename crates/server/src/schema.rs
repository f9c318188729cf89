//! The GraphQL schema of the dev server, built from `schema.graphql` at start-up.
//!
//! Every field of Query and Mutation (and any other field the registry names) resolves by
//! building the event AppSync would send and calling the shared registry; every other field
//! reads the same-named property of its parent object, as AppSync does for fields without a
//! resolver. No field is wired by hand here.

use std::sync::Arc;
use std::time::Instant;

use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, Scalar,
    Schema, Subscription, SubscriptionField, SubscriptionFieldFuture, TypeRef,
};
use async_graphql::{ErrorExtensions, Name, Value};
use async_graphql_parser::types::{BaseType, ConstDirective, Type, TypeKind, TypeSystemDefinition};
use chat_appsync::Registry;
use chat_appsync::ResolverError;
use chat_appsync::auth::resolver_context;
use chat_appsync::outcome::Outcome;
use chat_appsync::registry::event_for;
use chat_domain::Caller;
use chat_domain::limits::{
    QUERY_DEPTH_MAX, QUERY_DIRECTIVES_PER_FIELD_MAX, QUERY_FIELDS_MAX, QUERY_RECURSION_MAX,
};
use futures::StreamExt;

use crate::metrics::{Metrics, OperationMetrics};
use crate::query_limits::QueryLimits;
use crate::realtime::groups::{Admission, GroupFeed};
use crate::realtime::hub::{Event, Registration};
use crate::realtime::{ConnectionSignals, Groups, Hub, PublicationLog, SubscriptionSpec};

/// What AppSync provides without declaring it: its scalars and directives.
pub const APPSYNC_PRELUDE: &str = r#"
scalar AWSDate
scalar AWSTime
scalar AWSDateTime
scalar AWSTimestamp
scalar AWSEmail
scalar AWSJSON
scalar AWSURL
scalar AWSPhone
scalar AWSIPAddress
directive @aws_subscribe(mutations: [String]) on FIELD_DEFINITION
directive @aws_lambda on FIELD_DEFINITION | OBJECT
directive @aws_api_key on FIELD_DEFINITION | OBJECT
directive @aws_iam on FIELD_DEFINITION | OBJECT
directive @aws_oidc on FIELD_DEFINITION | OBJECT
directive @aws_cognito_user_pools(cognito_groups: [String]) on FIELD_DEFINITION | OBJECT
"#;

/// The repository's schema, compiled in so the binary serves exactly what it was built with.
pub const SCHEMA_SDL: &str = include_str!("../../../schema.graphql");

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema.graphql does not parse: {0}")]
    Parse(#[from] async_graphql_parser::Error),
    #[error("schema.graphql uses {0}, which the dev server does not support yet")]
    Unsupported(String),
    #[error("{0} has no resolver in the registry")]
    MissingResolver(String),
    #[error("the registry resolves {0}, which schema.graphql does not have")]
    UnknownField(String),
    #[error("{0}: @aws_subscribe needs mutations: [\"...\"] naming Mutation fields")]
    BadSubscribe(String),
    #[error(
        "{0}: @aws_subscribe lists {1}, which clients can call; list only the server's \
         publish mutations (@aws_iam, see chat_appsync::publish)"
    )]
    ClientMutationPublishes(String, String),
    #[error("the registry publishes through {0}, which schema.graphql lacks or clients can call")]
    UnknownPublishMutation(String),
    #[error("async-graphql rejected the schema: {0}")]
    Build(#[from] async_graphql::dynamic::SchemaError),
}

fn type_ref(ty: &Type) -> TypeRef {
    let base = match &ty.base {
        BaseType::Named(name) => TypeRef::named(name.as_str()),
        BaseType::List(inner) => TypeRef::List(Box::new(type_ref(inner))),
    };
    if ty.nullable {
        base
    } else {
        TypeRef::NonNull(Box::new(base))
    }
}

fn to_json(value: &Value) -> serde_json::Value {
    value.clone().into_json().unwrap_or(serde_json::Value::Null)
}

/// A resolver's JSON answer as a GraphQL value, moving its strings rather than copying
/// them (what `Value::from_json` does through serde, a tenth of the server's CPU for a
/// page of messages).
fn from_json(json: serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Boolean(b),
        serde_json::Value::Number(n) => Value::Number(n),
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(items) => Value::List(items.into_iter().map(from_json).collect()),
        serde_json::Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (Name::new(key), from_json(value)))
                .collect(),
        ),
    }
}

/// A field's parent value: the value a root field answered (owned), or a part of it that
/// [`property_field`] lent to its children.
fn parent_value<'a>(parent: &'a FieldValue<'a>) -> Option<&'a Value> {
    parent.as_value().or_else(|| parent.downcast_ref::<Value>())
}

/// A part of a parent's value as a field's value: objects and lists of objects are lent
/// (their fields read them in place), scalars copied (async-graphql renders scalars from
/// owned values). Before, every level copied its whole subtree: a page's `items` copied
/// the 20 messages, then each message again, then each field.
fn lend(value: &Value) -> Option<FieldValue<'_>> {
    match value {
        Value::Null => None,
        Value::Object(_) => Some(FieldValue::borrowed_any(value)),
        Value::List(items) => Some(FieldValue::list(items.iter().map(|item| match item {
            Value::Object(_) => FieldValue::borrowed_any(item),
            other => FieldValue::value(other.clone()),
        }))),
        scalar => Some(FieldValue::value(scalar.clone())),
    }
}

/// A root field's answer as its value: a list's items taken out one by one, so that
/// async-graphql does not copy each of them.
fn owned(value: Value) -> Option<FieldValue<'static>> {
    match value {
        Value::Null => None,
        Value::List(items) => Some(FieldValue::list(items.into_iter().map(FieldValue::value))),
        value => Some(FieldValue::value(value)),
    }
}

fn args_json(ctx: &ResolverContext<'_>) -> serde_json::Map<String, serde_json::Value> {
    ctx.args
        .as_index_map()
        .iter()
        .map(|(k, v)| (k.to_string(), to_json(v)))
        .collect()
}

pub(crate) fn graphql_error(error: ResolverError) -> async_graphql::Error {
    async_graphql::Error::new(error.error_message).extend_with(|_, ext| {
        ext.set("code", error.error_type.clone());
        ext.set("errorType", error.error_type.clone());
        if let Some(ms) = error.retry_after_ms {
            ext.set("retryAfterMs", ms);
        }
    })
}

/// Resolves a field through the registry, with the parent object as `source`. The events
/// the resolver's write publishes (built by the server, whole) are logged and published
/// once the request completes: what the caller selected plays no part in them. A root
/// field counts its calls in `metrics`.
fn registry_field(
    registry: Arc<Registry>,
    parent: String,
    field: String,
    ty: TypeRef,
    metrics: Option<Arc<OperationMetrics>>,
) -> Field {
    let name = field.clone();
    Field::new(name, ty, move |ctx: ResolverContext<'_>| {
        let registry = registry.clone();
        let parent = parent.clone();
        let field = field.clone();
        let metrics = metrics.clone();
        FieldFuture::new(async move {
            let caller = ctx
                .data_opt::<Caller>()
                .cloned()
                .unwrap_or(Caller::Anonymous);
            let args = serde_json::Value::Object(args_json(&ctx));
            let mut event = event_for(&parent, &field, args, resolver_context(&caller));
            event.source = parent_value(ctx.parent_value).map(to_json);
            let started = metrics.as_ref().map(|_| Instant::now());
            let resolved = registry.resolve(event).await;
            if let (Some(metrics), Some(started)) = (&metrics, started) {
                metrics.record(Outcome::of(&resolved), started.elapsed());
            }
            let resolved = resolved.map_err(graphql_error)?;
            if !resolved.publications.is_empty()
                && let Some(log) = ctx.data_opt::<PublicationLog>()
            {
                log.record(resolved.publications);
            }
            Ok(owned(from_json(resolved.data)))
        })
    })
}

/// Request data that marks a request as the server's own, with AWS_IAM authority: only
/// code in this process can add it (nothing a client sends does).
#[derive(Debug, Clone, Copy)]
pub struct IamAuthority;

/// A field only IAM may call (`@aws_iam` without `@aws_lambda`): the server's publish
/// mutations. A client is refused as AppSync refuses it; with [`IamAuthority`] the field
/// answers its `event` argument, as the deployed local (NONE) resolver does, and the event
/// is published.
fn iam_only_field(parent: String, field: String, ty: TypeRef) -> Field {
    let name = field.clone();
    Field::new(name, ty, move |ctx: ResolverContext<'_>| {
        let (parent, field) = (parent.clone(), field.clone());
        FieldFuture::new(async move {
            if ctx.data_opt::<IamAuthority>().is_none() {
                return Err(graphql_error(ResolverError::new(
                    chat_domain::ErrorCode::Unauthorized,
                    format!("Not Authorized to access {field} on type {parent}"),
                )));
            }
            let event = ctx
                .args
                .get("event")
                .map(|v| v.as_value().clone())
                .unwrap_or(Value::Null);
            if let Some(log) = ctx.data_opt::<PublicationLog>()
                && let Some(mutation) = chat_appsync::publish::MUTATIONS
                    .iter()
                    .map(|(m, _)| *m)
                    .find(|m| *m == field)
            {
                log.record(vec![chat_appsync::Publication {
                    mutation,
                    event: to_json(&event),
                }]);
            }
            Ok(Some(FieldValue::value(event)))
        })
    })
}

/// Whether a field's directives make it IAM only (`chat_appsync::publish::is_iam_only`).
fn is_iam_only(directives: &[async_graphql::Positioned<ConstDirective>]) -> bool {
    chat_appsync::publish::is_iam_only(directives.iter().map(|d| d.node.name.node.as_str()))
}

/// AppSync's subscribe-time check: a caller is needed, and the registry's resolver for the
/// subscription field (when it has one) must accept the arguments for that caller.
async fn authorize_subscription(
    registry: &Registry,
    caller: &Caller,
    field: &str,
    args: &serde_json::Map<String, serde_json::Value>,
) -> async_graphql::Result<()> {
    if *caller == Caller::Anonymous {
        return Err(graphql_error(ResolverError::new(
            chat_domain::ErrorCode::Unauthorized,
            "missing or invalid Authorization token",
        )));
    }
    if registry.has(&format!("Subscription.{field}")) {
        let event = event_for(
            "Subscription",
            field,
            serde_json::Value::Object(args.clone()),
            resolver_context(caller),
        );
        registry.resolve(event).await.map_err(graphql_error)?;
    }
    Ok(())
}

type FieldStream<'a> = futures::stream::BoxStream<'a, async_graphql::Result<FieldValue<'a>>>;

/// The results of the mutations a hub registration receives. When the hub closes the queue
/// of a live registration (too slow), the connection (or group) is told it fell behind.
fn hub_events<'a>(
    registration: Registration,
    queue: tokio::sync::mpsc::Receiver<Event>,
    signals: Option<ConnectionSignals>,
) -> FieldStream<'a> {
    futures::stream::unfold(
        (registration, queue, signals),
        |(registration, mut queue, signals)| async move {
            match queue.recv().await {
                Some(event) => {
                    let value = Value::from_json((*event).clone()).unwrap_or(Value::Null);
                    Some((Ok(FieldValue::value(value)), (registration, queue, signals)))
                }
                None => {
                    if let Some(signals) = &signals {
                        signals.fell_behind();
                    }
                    None
                }
            }
        },
    )
    .boxed()
}

/// A subscription field: authorizes through the registry when it has a resolver for the
/// field (AppSync runs a subscription's resolver at subscribe time), then streams the
/// results of the mutations it listens to that match its arguments.
///
/// Over the WebSocket, subscriptions run in groups ([`crate::realtime::groups`]), which
/// execute a request in one of two roles given by the request data: an admission run
/// ([`Admission`]: authorize this caller, record the arguments, stream nothing) and a
/// group's shared execution ([`GroupFeed`]: every member was admitted; take the hub
/// registration the group made and stream it). Without either, the field authorizes and
/// registers itself. Each admission counts in `metrics` (a group's shared execution does
/// not: its members were counted when admitted).
fn subscription_field(
    registry: Arc<Registry>,
    hub: Arc<Hub>,
    field: String,
    ty: TypeRef,
    metrics: Option<Arc<OperationMetrics>>,
) -> SubscriptionField {
    let name = field.clone();
    SubscriptionField::new(name, ty, move |ctx: ResolverContext<'_>| {
        let (registry, hub, field) = (registry.clone(), hub.clone(), field.clone());
        let metrics = metrics.clone();
        SubscriptionFieldFuture::new(async move {
            let args = args_json(&ctx);
            let signals = ctx.data_opt::<ConnectionSignals>().cloned();
            if let Some(feed) = ctx.data_opt::<Arc<GroupFeed>>() {
                let (registration, queue) = feed
                    .take(&field, &args)
                    .unwrap_or_else(|| hub.subscribe(&field, &args));
                return Ok(hub_events(registration, queue, signals));
            }
            let caller = ctx
                .data_opt::<Caller>()
                .cloned()
                .unwrap_or(Caller::Anonymous);
            let started = metrics.as_ref().map(|_| Instant::now());
            let authorized = authorize_subscription(&registry, &caller, &field, &args).await;
            if let (Some(metrics), Some(started)) = (&metrics, started) {
                let outcome = match &authorized {
                    Ok(()) => Outcome::Ok,
                    Err(error) => Outcome::of_error_type(&error_type(error)),
                };
                metrics.record(outcome, started.elapsed());
            }
            authorized?;
            if let Some(admission) = ctx.data_opt::<Arc<Admission>>() {
                admission.record(field, args);
                let nothing: FieldStream<'_> = futures::stream::empty().boxed();
                return Ok(nothing);
            }
            let (registration, queue) = hub.subscribe(&field, &args);
            Ok(hub_events(registration, queue, signals))
        })
    })
}

/// The `errorType` an error was given by [`graphql_error`].
fn error_type(error: &async_graphql::Error) -> String {
    match error.extensions.as_ref().and_then(|e| e.get("errorType")) {
        Some(Value::String(error_type)) => error_type.clone(),
        _ => chat_domain::ErrorCode::Internal.as_str().to_owned(),
    }
}

/// The mutations listed by `@aws_subscribe(mutations: [...])`, if the directive is there.
fn aws_subscribe(directives: &[async_graphql::Positioned<ConstDirective>]) -> Option<Vec<String>> {
    let directive = directives
        .iter()
        .find(|d| d.node.name.node == "aws_subscribe")?;
    let mutations = directive.node.get_argument("mutations")?;
    match &mutations.node {
        async_graphql::Value::List(items) => Some(
            items
                .iter()
                .filter_map(|v| match v {
                    async_graphql::Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}

/// AppSync's default for a field without a resolver: the parent's property of that name.
fn property_field(field: String, ty: TypeRef) -> Field {
    let name = Name::new(&field);
    Field::new(field, ty, move |ctx: ResolverContext<'_>| {
        let value = match parent_value(ctx.parent_value) {
            Some(Value::Object(map)) => map.get(&name),
            _ => None,
        };
        FieldFuture::Value(value.and_then(lend))
    })
}

/// The executable schema, the hub its subscriptions and mutations meet in, and the groups
/// that share one execution among identical subscriptions.
#[derive(Clone)]
pub struct Api {
    pub schema: Schema,
    pub hub: Arc<Hub>,
    pub groups: Arc<Groups>,
    /// What `GET /metrics` shows; `None` when metrics are off.
    pub metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("subscribers", &self.hub.subscriber_count())
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

pub fn build(registry: Arc<Registry>) -> Result<Api, SchemaError> {
    build_from(SCHEMA_SDL, registry)
}

/// How the schema is served, beyond what `schema.graphql` says.
#[derive(Debug, Clone, Copy)]
pub struct SchemaOptions {
    /// Answer `__schema` / `__type` (GraphiQL and code generators need it; production can
    /// turn it off, as AppSync's `IntrospectionConfig: DISABLED` does).
    pub introspection: bool,
    /// Count requests per operation ([`crate::metrics`]).
    pub metrics: bool,
}

impl Default for SchemaOptions {
    fn default() -> Self {
        SchemaOptions {
            introspection: true,
            metrics: true,
        }
    }
}

pub fn build_with(registry: Arc<Registry>, options: SchemaOptions) -> Result<Api, SchemaError> {
    build_from_with(SCHEMA_SDL, registry, options)
}

/// Reads every Subscription field's `@aws_subscribe` list.
fn subscription_specs(
    document: &async_graphql_parser::types::ServiceDocument,
) -> Result<Vec<SubscriptionSpec>, SchemaError> {
    let mut mutations = Vec::new();
    let mut iam_only = Vec::new();
    let mut specs = Vec::new();
    for definition in &document.definitions {
        let TypeSystemDefinition::Type(def) = definition else {
            continue;
        };
        let TypeKind::Object(object) = &def.node.kind else {
            continue;
        };
        match def.node.name.node.as_str() {
            "Mutation" => {
                for f in &object.fields {
                    let name = f.node.name.node.to_string();
                    if is_iam_only(&f.node.directives) {
                        iam_only.push(name.clone());
                    }
                    mutations.push(name);
                }
            }
            "Subscription" => {
                for f in &object.fields {
                    let field = f.node.name.node.to_string();
                    let listed = aws_subscribe(&f.node.directives).unwrap_or_default();
                    specs.push(SubscriptionSpec {
                        field,
                        mutations: listed,
                    });
                }
            }
            _ => {}
        }
    }
    for spec in &specs {
        if spec.mutations.is_empty() || spec.mutations.iter().any(|m| !mutations.contains(m)) {
            return Err(SchemaError::BadSubscribe(format!(
                "Subscription.{}",
                spec.field
            )));
        }
        if let Some(client) = spec.mutations.iter().find(|m| !iam_only.contains(m)) {
            return Err(SchemaError::ClientMutationPublishes(
                format!("Subscription.{}", spec.field),
                client.clone(),
            ));
        }
    }
    // Every mutation the registry publishes through is an IAM-only field of the schema.
    for (mutation, _) in chat_appsync::publish::MUTATIONS {
        if !iam_only.iter().any(|m| m == mutation) {
            return Err(SchemaError::UnknownPublishMutation(mutation.to_owned()));
        }
    }
    Ok(specs)
}

pub fn build_from(sdl: &str, registry: Arc<Registry>) -> Result<Api, SchemaError> {
    build_from_with(sdl, registry, SchemaOptions::default())
}

fn build_from_with(
    sdl: &str,
    registry: Arc<Registry>,
    options: SchemaOptions,
) -> Result<Api, SchemaError> {
    let document = async_graphql_parser::parse_schema(format!("{APPSYNC_PRELUDE}\n{sdl}"))?;
    let specs = subscription_specs(&document)?;
    let hub = Hub::new(&specs);
    let mut metrics = options.metrics.then(|| Metrics::new([]));
    let mut has_mutation = false;
    let mut has_subscription = false;
    let mut schema_fields = Vec::new();
    let mut types = Vec::new();
    for definition in &document.definitions {
        let TypeSystemDefinition::Type(def) = definition else {
            continue; // directive definitions: metadata for AppSync and us, not types
        };
        let def = &def.node;
        let type_name = def.name.node.to_string();
        match &def.kind {
            TypeKind::Scalar => {
                types.push(async_graphql::dynamic::Type::from(Scalar::new(type_name)))
            }
            TypeKind::Enum(e) => {
                let mut en = Enum::new(type_name);
                for v in &e.values {
                    en = en.item(v.node.value.node.to_string());
                }
                types.push(en.into());
            }
            TypeKind::InputObject(input) => {
                let mut obj = InputObject::new(type_name);
                for f in &input.fields {
                    obj = obj.field(InputValue::new(
                        f.node.name.node.to_string(),
                        type_ref(&f.node.ty.node),
                    ));
                }
                types.push(obj.into());
            }
            TypeKind::Object(object) => {
                match type_name.as_str() {
                    "Mutation" => has_mutation = true,
                    "Subscription" => {
                        has_subscription = true;
                        let mut subscription = Subscription::new(type_name.clone());
                        for f in &object.fields {
                            let f = &f.node;
                            let field_name = f.name.node.to_string();
                            let key = format!("Subscription.{field_name}");
                            let operation = metrics.as_mut().map(|m| m.add_operation(&key));
                            if registry.has(&key) {
                                schema_fields.push(key);
                            }
                            let mut field = subscription_field(
                                registry.clone(),
                                hub.clone(),
                                field_name,
                                type_ref(&f.ty.node),
                                operation,
                            );
                            for arg in &f.arguments {
                                let arg = &arg.node;
                                field = field.argument(InputValue::new(
                                    arg.name.node.to_string(),
                                    type_ref(&arg.ty.node),
                                ));
                            }
                            subscription = subscription.field(field);
                        }
                        types.push(subscription.into());
                        continue;
                    }
                    _ => {}
                }
                let root = matches!(type_name.as_str(), "Query" | "Mutation");
                let mut obj = Object::new(type_name.clone());
                for f in &object.fields {
                    let f = &f.node;
                    let field_name = f.name.node.to_string();
                    let key = format!("{type_name}.{field_name}");
                    let ty = type_ref(&f.ty.node);
                    let mut field = if registry.has(&key) {
                        let operation = metrics
                            .as_mut()
                            .filter(|_| root)
                            .map(|m| m.add_operation(&key));
                        schema_fields.push(key);
                        registry_field(
                            registry.clone(),
                            type_name.clone(),
                            field_name,
                            ty,
                            operation,
                        )
                    } else if is_iam_only(&f.directives) {
                        iam_only_field(type_name.clone(), field_name, ty)
                    } else if root {
                        return Err(SchemaError::MissingResolver(key));
                    } else {
                        property_field(field_name, ty)
                    };
                    for arg in &f.arguments {
                        let arg = &arg.node;
                        field = field.argument(InputValue::new(
                            arg.name.node.to_string(),
                            type_ref(&arg.ty.node),
                        ));
                    }
                    obj = obj.field(field);
                }
                types.push(obj.into());
            }
            TypeKind::Interface(_) => {
                return Err(SchemaError::Unsupported(format!("interface {type_name}")));
            }
            TypeKind::Union(_) => {
                return Err(SchemaError::Unsupported(format!("union {type_name}")));
            }
        }
    }
    if let Some(unknown) = registry
        .fields()
        .find(|f| !schema_fields.iter().any(|s| s == f))
    {
        return Err(SchemaError::UnknownField(unknown.to_owned()));
    }
    let mut builder = Schema::build(
        "Query",
        has_mutation.then_some("Mutation"),
        has_subscription.then_some("Subscription"),
    );
    for ty in types {
        builder = builder.register(ty);
    }
    // The operation's shape is checked first, once per fragment (crate::query_limits);
    // async-graphql's own limits, at the same values, stay as a backstop.
    builder = builder
        .extension(QueryLimits::new(options.introspection))
        .limit_depth(QUERY_DEPTH_MAX)
        .limit_complexity(QUERY_FIELDS_MAX)
        .limit_recursive_depth(QUERY_RECURSION_MAX)
        .limit_directives(QUERY_DIRECTIVES_PER_FIELD_MAX);
    if !options.introspection {
        builder = builder.disable_introspection();
    }
    // Subscription responses are rendered from the mutation's result by plain property
    // fields, the same for every caller, unless a type below the roots has a resolver: then
    // only a caller's own identical subscriptions share a group.
    let per_caller = schema_fields.iter().any(|f| {
        !["Query.", "Mutation.", "Subscription."]
            .iter()
            .any(|root| f.starts_with(root))
    });
    Ok(Api {
        schema: builder.finish()?,
        groups: Groups::new(hub.clone(), per_caller),
        hub,
        metrics: metrics.map(Arc::new),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use async_graphql_parser::types::TypeKind;
    use chat_domain::{ChatService, ServerKey, SystemClock};
    use chat_embedded::SqliteStore;

    use super::*;

    fn registry() -> Arc<Registry> {
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let service = ChatService::new(store, ServerKey::generate(), Arc::new(SystemClock));
        Arc::new(Registry::new(Arc::new(service)))
    }

    /// type -> field -> (type, [(argument, type)]), for object types of an SDL document.
    type Shape = BTreeMap<String, BTreeMap<String, (String, Vec<(String, String)>)>>;

    fn shape(sdl: &str) -> (Shape, BTreeMap<String, Vec<String>>) {
        let doc = async_graphql_parser::parse_schema(sdl).unwrap();
        let mut objects = Shape::new();
        let mut enums = BTreeMap::new();
        for def in doc.definitions {
            let TypeSystemDefinition::Type(def) = def else {
                continue;
            };
            let name = def.node.name.node.to_string();
            match def.node.kind {
                TypeKind::Object(o) => {
                    let fields = o.fields.iter().map(|f| {
                        let args =
                            f.node.arguments.iter().map(|a| {
                                (a.node.name.node.to_string(), a.node.ty.node.to_string())
                            });
                        (
                            f.node.name.node.to_string(),
                            (f.node.ty.node.to_string(), args.collect()),
                        )
                    });
                    objects.insert(name, fields.collect());
                }
                TypeKind::Enum(e) => {
                    let values = e.values.iter().map(|v| v.node.value.node.to_string());
                    enums.insert(name, values.collect());
                }
                _ => {}
            }
        }
        (objects, enums)
    }

    #[test]
    fn served_schema_equals_schema_graphql() {
        let api = build(registry()).unwrap();
        let served = shape(&api.schema.sdl());
        let file = shape(&format!("{APPSYNC_PRELUDE}\n{SCHEMA_SDL}"));
        assert_eq!(served, file);
        assert!(served.0["Mutation"].contains_key("sendMessage"));
    }

    #[test]
    fn a_root_field_without_resolver_is_refused_at_start_up() {
        let sdl = SCHEMA_SDL.replace("type Query {", "type Query {\n  secrets: String");
        let error = build_from(&sdl, registry()).unwrap_err();
        assert!(
            matches!(error, SchemaError::MissingResolver(ref f) if f == "Query.secrets"),
            "{error}"
        );
    }

    #[test]
    fn a_resolver_without_schema_field_is_refused_at_start_up() {
        let sdl = SCHEMA_SDL.replace(
            "  message(appToken: ID!, chatNumber: Int!, number: Int!): Message\n",
            "",
        );
        assert_ne!(sdl, SCHEMA_SDL);
        let error = build_from(&sdl, registry()).unwrap_err();
        assert!(
            matches!(error, SchemaError::UnknownField(ref f) if f == "Query.message"),
            "{error}"
        );
    }
}

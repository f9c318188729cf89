//! The resolver registry: `"Type.field"` -> resolver. A field's behaviour is written once,
//! here; a Lambda function and the dev server differ only in how the event arrives.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_lambda_events::appsync::{AppSyncDirectResolverEvent, AppSyncIdentity};
use chat_domain::{
    AppName, AppToken, Caller, Chat, ChatFilterArgs, ChatNumber, ChatService, ChatStatus,
    DomainError, ErrorCode, MessageBody, MessageNumber, MessagesArgs, PageSize, Result, Role,
    RoutingArgs, SearchQuery, Subject, Team, UserId,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::args::Args;
use crate::attachments;
use crate::auth::caller_from_resolver_context;
use crate::publish::{self, Publication};
use crate::wire;

/// An AppSync direct Lambda resolver event with untyped arguments, source and stash.
pub type ResolverEvent = AppSyncDirectResolverEvent<Value, Value, Value>;

/// What a failed resolver answers: AppSync's `errorType` / `errorMessage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("{error_type}: {error_message}")]
pub struct ResolverError {
    pub error_type: String,
    pub error_message: String,
    /// For `Throttled`: when a retry would be admitted. Both runtimes show it as the
    /// GraphQL error's `errorInfo.retryAfterMs` (on AppSync through the response template,
    /// see [`crate::lambda`]); the dev server also as `extensions.retryAfterMs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ResolverError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ResolverError {
            error_type: code.as_str().to_owned(),
            error_message: message.into(),
            retry_after_ms: None,
        }
    }
}

impl From<DomainError> for ResolverError {
    fn from(error: DomainError) -> Self {
        if let DomainError::Internal { .. } = &error {
            // The only place internal errors are logged: with their whole source chain.
            let mut chain = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                chain.push_str(": ");
                chain.push_str(&cause.to_string());
                source = cause.source();
            }
            tracing::error!(error = %chain, "internal error");
        }
        let retry_after_ms = match &error {
            DomainError::Throttled { retry_after_ms } => Some(*retry_after_ms),
            _ => None,
        };
        ResolverError {
            retry_after_ms,
            ..ResolverError::new(error.code(), error.public_message())
        }
    }
}

/// What a resolver answers: the field's value and the events its committed write publishes
/// (see [`crate::publish`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resolved {
    pub data: Value,
    pub publications: Vec<Publication>,
}

impl Resolved {
    /// `data`, publishing `event` through the publish mutation `mutation`.
    pub(crate) fn publishing(data: Value, mutation: &'static str, event: Value) -> Resolved {
        Resolved {
            data,
            publications: vec![Publication { mutation, event }],
        }
    }

    /// `data`, publishing itself whole through `mutation`.
    pub(crate) fn published(data: Value, mutation: &'static str) -> Resolved {
        Resolved::publishing(data.clone(), mutation, data)
    }
}

impl From<Value> for Resolved {
    fn from(data: Value) -> Resolved {
        Resolved {
            data,
            publications: Vec::new(),
        }
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Resolved>> + Send>>;
type Resolver =
    Box<dyn Fn(Arc<ChatService>, Caller, Map<String, Value>) -> BoxFuture + Send + Sync>;

struct Entry {
    resolver: Resolver,
    /// The publish mutations this field's resolver may publish through.
    publishes: &'static [&'static str],
}

pub struct Registry {
    service: Arc<ChatService>,
    resolvers: BTreeMap<&'static str, Entry>,
}

impl Registry {
    pub fn new(service: Arc<ChatService>) -> Self {
        let mut registry = Registry {
            service,
            resolvers: BTreeMap::new(),
        };
        registry.add("Query.application", application);
        registry.add("Query.chat", chat);
        registry.add("Query.chats", chats);
        registry.add("Query.message", message);
        registry.add("Query.messages", messages);
        registry.add("Query.searchMessages", search_messages);
        registry.add("Query.unreadSummary", unread_summary);
        registry.add("Mutation.createApplication", create_application);
        registry.add_publishing(
            "Mutation.updateApplication",
            &[publish::CHAT],
            update_application,
        );
        registry.add(
            "Mutation.rotateApplicationSecret",
            rotate_application_secret,
        );
        registry.add_publishing("Mutation.createChat", &[publish::CHAT], create_chat);
        registry.add_publishing("Mutation.updateChat", &[publish::CHAT], update_chat);
        registry.add_publishing("Mutation.assignChat", &[publish::CHAT], assign_chat);
        registry.add_publishing(
            "Mutation.sendMessage",
            &[publish::MESSAGE_SENT],
            crate::attachments::send_message,
        );
        registry.add_publishing(
            "Mutation.editMessage",
            &[publish::MESSAGE_CHANGED],
            edit_message,
        );
        registry.add_publishing(
            "Mutation.deleteMessage",
            &[publish::MESSAGE_CHANGED],
            delete_message,
        );
        registry.add_publishing(
            "Mutation.markChatRead",
            &[publish::READ_RECEIPT],
            mark_chat_read,
        );
        registry.add("Mutation.markAllRead", mark_all_read);
        // Subscription resolvers run when a client subscribes: they authorize (an error
        // refuses the subscription) and return null; events come from the mutations.
        registry.add("Subscription.onMessage", on_chat_feed);
        registry.add("Subscription.onReadReceipt", on_chat_feed);
        registry.add("Subscription.onInboxMessage", on_app_feed);
        registry.add("Subscription.onChat", on_app_feed);
        crate::presence::register(&mut registry);
        crate::webhooks::register(&mut registry);
        crate::attachments::register(&mut registry);
        registry
    }

    pub(crate) fn add<F, Fut, R>(&mut self, field: &'static str, resolver: F)
    where
        F: Fn(Arc<ChatService>, Caller, Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R>> + Send + 'static,
        R: Into<Resolved> + 'static,
    {
        self.add_publishing(field, &[], resolver);
    }

    pub(crate) fn add_publishing<F, Fut, R>(
        &mut self,
        field: &'static str,
        publishes: &'static [&'static str],
        resolver: F,
    ) where
        F: Fn(Arc<ChatService>, Caller, Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R>> + Send + 'static,
        R: Into<Resolved> + 'static,
    {
        let boxed: Resolver = Box::new(move |svc, caller, args| {
            let answer = resolver(svc, caller, args);
            Box::pin(async move { answer.await.map(Into::into) })
        });
        self.resolvers.insert(
            field,
            Entry {
                resolver: boxed,
                publishes,
            },
        );
    }

    /// The publish mutations the resolver of `field` may publish through (its function's
    /// only AppSync permission on AWS).
    pub fn publishes(&self, field: &str) -> &'static [&'static str] {
        self.resolvers
            .get(field)
            .map_or(&[], |entry| entry.publishes)
    }

    /// Every `"Type.field"` with a resolver.
    pub fn fields(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.resolvers.keys().copied()
    }

    pub fn has(&self, field: &str) -> bool {
        self.resolvers.contains_key(field)
    }

    pub fn service(&self) -> &Arc<ChatService> {
        &self.service
    }

    /// Resolves one field. Every field needs a caller: an event without a usable identity
    /// is Unauthorized before any argument is looked at.
    pub async fn resolve(&self, event: ResolverEvent) -> Result<Resolved, ResolverError> {
        let key = format!("{}.{}", event.info.parent_type_name, event.info.field_name);
        let Some(entry) = self.resolvers.get(key.as_str()) else {
            return Err(ResolverError::new(
                ErrorCode::BadInput,
                format!("no resolver for {key}"),
            ));
        };
        let caller = match &event.identity {
            Some(AppSyncIdentity::Lambda(lambda)) => {
                caller_from_resolver_context(&lambda.resolver_context)
            }
            _ => Caller::Anonymous,
        };
        if caller == Caller::Anonymous {
            return Err(
                DomainError::Unauthorized("missing or invalid Authorization token".into()).into(),
            );
        }
        let args = match event.arguments {
            Some(Value::Object(map)) => map,
            None | Some(Value::Null) => Map::new(),
            Some(_) => {
                return Err(ResolverError::new(
                    ErrorCode::BadInput,
                    "arguments must be an object",
                ));
            }
        };
        let resolved = (entry.resolver)(self.service.clone(), caller, args)
            .await
            .map_err(ResolverError::from)?;
        debug_assert!(
            resolved
                .publications
                .iter()
                .all(|p| entry.publishes.contains(&p.mutation)),
            "{key} published through a mutation it does not declare"
        );
        Ok(resolved)
    }
}

/// Builds the event AppSync would send for a field, as the dev server does.
pub fn event_for(
    parent_type: &str,
    field: &str,
    arguments: Value,
    resolver_context: Value,
) -> ResolverEvent {
    let mut info = aws_lambda_events::appsync::AppSyncInfo::default();
    info.parent_type_name = parent_type.to_owned();
    info.field_name = field.to_owned();
    info.variables = json!({});
    let mut identity = aws_lambda_events::appsync::AppSyncIdentityLambda::default();
    identity.resolver_context = resolver_context;
    let mut event = ResolverEvent::default();
    event.arguments = Some(arguments);
    event.identity = Some(AppSyncIdentity::Lambda(identity));
    event.info = info;
    event.stash = json!({});
    event
}

// ---- resolvers ---------------------------------------------------------------------------

/// The role a chat is rendered for (`unreadCount` is the caller's). Only users get this
/// far with a chat: the service refuses anyone else first.
fn viewer(caller: &Caller) -> Role {
    match caller {
        Caller::User(user) => user.role,
        Caller::Admin | Caller::Anonymous => Role::Agent,
    }
}

pub(crate) fn app_token(args: &Args<'_>, name: &str) -> Result<AppToken> {
    AppToken::parse(args.str(name)?)
}

/// The `appToken` and `chatNumber` arguments that name a chat.
pub(crate) fn chat_of(args: &Args<'_>) -> Result<(AppToken, ChatNumber)> {
    Ok((
        app_token(args, "appToken")?,
        ChatNumber::new(args.int("chatNumber")?)?,
    ))
}

async fn application(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let token = app_token(&args, "token")?;
    let app = svc.application(&caller, &token).await?;
    Ok(app.as_ref().map_or(Value::Null, wire::application))
}

async fn create_application(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let name = AppName::parse(args.str("name")?)?;
    let credentials = svc.create_application(&caller, name).await?;
    Ok(wire::credentials(&credentials))
}

async fn rotate_application_secret(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let token = app_token(&args, "token")?;
    let grace = args.opt_int("graceSeconds")?;
    let credentials = svc
        .rotate_application_secret(&caller, &token, grace)
        .await?;
    // An audit line; the secret itself is never logged.
    tracing::info!(
        app = %token,
        generation = credentials.application.secret_generation,
        "application secret rotated"
    );
    Ok(wire::credentials(&credentials))
}

async fn update_application(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Resolved> {
    let args = Args(&args);
    let token = app_token(&args, "token")?;
    let name = args.opt_str("name")?.map(AppName::parse).transpose()?;
    let routing = args
        .opt_object("routing")?
        .map(|r| -> Result<RoutingArgs> {
            Ok(RoutingArgs {
                enabled: r.bool("enabled")?,
                max_open_chats: r.opt_int("maxOpenChatsPerAgent")?,
            })
        })
        .transpose()?;
    let (before, after) = svc
        .update_application(&caller, &token, name, routing)
        .await?;
    let mut resolved = Resolved::from(wire::application(&after));
    if before.routing.opens_room(&after.routing) {
        crate::routing::pick_up(&svc, &token, &mut resolved).await;
    }
    Ok(resolved)
}

async fn chat(svc: Arc<ChatService>, caller: Caller, args: Map<String, Value>) -> Result<Value> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    let number = ChatNumber::new(args.int("number")?)?;
    let chat = svc.chat(&caller, &app, number).await?;
    let mut json = chat
        .as_ref()
        .map_or(Value::Null, |c| wire::chat(c, viewer(&caller)));
    attachments::add_to_chats(&svc, vec![&mut json]).await?;
    Ok(json)
}

async fn chats(svc: Arc<ChatService>, caller: Caller, args: Map<String, Value>) -> Result<Value> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    let status = args.opt_str("status")?.map(ChatStatus::parse).transpose()?;
    let limit = PageSize::parse(args.opt_int("limit")?)?;
    let mut query = ChatFilterArgs {
        status,
        ..Default::default()
    };
    if let Some(filter) = filter_args(&args)? {
        if filter.status.is_some() && status.is_some() && filter.status != status {
            return Err(DomainError::bad_input(
                "status and filter.status disagree: give one of them",
            ));
        }
        query = ChatFilterArgs {
            status: filter.status.or(status),
            ..filter
        };
    }
    let page = svc
        .inbox(&caller, &app, &query, limit, args.opt_str("nextToken")?)
        .await?;
    let mut json = wire::page(&page, |c| wire::chat(c, viewer(&caller)));
    attachments::add_to_chat_page(&svc, &mut json).await?;
    Ok(json)
}

/// The `filter: ChatFilter` argument, if given.
fn filter_args(args: &Args<'_>) -> Result<Option<ChatFilterArgs>> {
    let Some(filter) = args.opt_object("filter")? else {
        return Ok(None);
    };
    Ok(Some(ChatFilterArgs {
        assignee: filter.opt_str("assignee")?.map(str::to_owned),
        team: filter.opt_str("team")?.map(str::to_owned),
        status: filter
            .opt_str("status")?
            .map(ChatStatus::parse)
            .transpose()?,
    }))
}

async fn assign_chat(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Resolved> {
    let args = Args(&args);
    let (app, number) = chat_of(&args)?;
    let assignee = args.opt_str("assignee")?.map(UserId::parse).transpose()?;
    // An absent team leaves it; an explicit null or blank one clears it.
    let team = match args.nullable_str("team")? {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => Some(Team::parse(raw)?),
    };
    let chat = svc
        .assign_chat(&caller, &app, number, assignee, team)
        .await?;
    let mut resolved = chat_event(&svc, &chat, &caller).await?;
    // A chat put back in the queue, or a slot freed by a transfer.
    crate::routing::pick_up(&svc, &app, &mut resolved).await;
    Ok(resolved)
}

/// A chat for the caller, published as the agents see it (`onChat` is the agents' feed).
async fn chat_event(svc: &ChatService, chat: &Chat, caller: &Caller) -> Result<Resolved> {
    let mut data = wire::chat(chat, viewer(caller));
    let mut event = wire::chat(chat, Role::Agent);
    attachments::add_to_chats(svc, vec![&mut data, &mut event]).await?;
    Ok(Resolved::publishing(data, publish::CHAT, event))
}

async fn create_chat(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Resolved> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    let subject = args
        .opt_str("subject")?
        .map(Subject::parse)
        .transpose()?
        .flatten();
    let customer = args.opt_str("customerId")?.map(UserId::parse).transpose()?;
    let chat = svc.create_chat(&caller, &app, subject, customer).await?;
    let chat = crate::routing::route_new(&svc, chat).await;
    chat_event(&svc, &chat, &caller).await
}

async fn update_chat(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Resolved> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    let number = ChatNumber::new(args.int("number")?)?;
    // An explicit null or blank subject clears it; an absent one leaves it.
    let subject = match args.nullable_str("subject")? {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => Some(Subject::parse(raw)?),
    };
    let status = args.opt_str("status")?.map(ChatStatus::parse).transpose()?;
    let chat = svc
        .update_chat(&caller, &app, number, subject, status)
        .await?;
    let mut resolved = chat_event(&svc, &chat, &caller).await?;
    if status.is_some() {
        // A resolved chat frees its assignee's slot; a reopened one may wait for an agent.
        crate::routing::pick_up(&svc, &app, &mut resolved).await;
    }
    Ok(resolved)
}

async fn message(svc: Arc<ChatService>, caller: Caller, args: Map<String, Value>) -> Result<Value> {
    let args = Args(&args);
    let (app, chat) = chat_of(&args)?;
    let number = MessageNumber::new(args.int("number")?)?;
    let message = svc.message(&caller, &app, chat, number).await?;
    match message {
        Some(message) => attachments::message(&svc, &message).await,
        None => Ok(Value::Null),
    }
}

async fn messages(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let (app, chat) = chat_of(&args)?;
    let query = MessagesArgs {
        after: args.opt_int("after")?,
        before: args.opt_int("before")?,
        limit: args.opt_int("limit")?,
        next_token: args.opt_str("nextToken")?.map(str::to_owned),
    };
    let page = svc.messages(&caller, &app, chat, query).await?;
    let mut json = wire::page(&page, wire::message);
    attachments::add_to_page(&svc, &mut json).await?;
    Ok(json)
}

async fn search_messages(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    let chat = args
        .opt_int("chatNumber")?
        .map(ChatNumber::new)
        .transpose()?;
    let query = SearchQuery::parse(args.str("query")?)?;
    let limit = PageSize::parse(args.opt_int("limit")?)?;
    let filter = filter_args(&args)?;
    let page = svc
        .search_messages(
            &caller,
            &app,
            chat,
            filter.as_ref(),
            query,
            limit,
            args.opt_str("nextToken")?,
        )
        .await?;
    let mut json = wire::page(&page, wire::message);
    attachments::add_to_page(&svc, &mut json).await?;
    Ok(json)
}

async fn edit_message(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Resolved> {
    let args = Args(&args);
    let (app, chat) = chat_of(&args)?;
    let number = MessageNumber::new(args.int("number")?)?;
    let body = MessageBody::parse(args.str("body")?)?;
    let message = svc.edit_message(&caller, &app, chat, number, body).await?;
    Ok(Resolved::published(
        attachments::message(&svc, &message).await?,
        publish::MESSAGE_CHANGED,
    ))
}

async fn delete_message(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Resolved> {
    let args = Args(&args);
    let (app, chat) = chat_of(&args)?;
    let number = MessageNumber::new(args.int("number")?)?;
    let message = svc.delete_message(&caller, &app, chat, number).await?;
    Ok(Resolved::published(
        attachments::message(&svc, &message).await?,
        publish::MESSAGE_CHANGED,
    ))
}

async fn on_chat_feed(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let (app, chat) = chat_of(&args)?;
    svc.authorize_chat_feed(&caller, &app, chat).await?;
    Ok(Value::Null)
}

async fn on_app_feed(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    svc.authorize_app_feed(&caller, &app)?;
    Ok(Value::Null)
}

async fn mark_chat_read(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Resolved> {
    let args = Args(&args);
    let (app, chat) = chat_of(&args)?;
    let up_to = args.opt_int("upTo")?.map(MessageNumber::new).transpose()?;
    let receipt = svc.mark_chat_read(&caller, &app, chat, up_to).await?;
    Ok(Resolved::published(
        wire::read_receipt(&receipt),
        publish::READ_RECEIPT,
    ))
}

tokio::task_local! {
    /// When the invocation that runs the current resolution must have answered by.
    static DEADLINE: tokio::time::Instant;
}

/// What a resolver that works in pages keeps in hand for its answer and the way back.
pub const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs `resolution` knowing that its invocation must answer by `deadline` (a Lambda's, from
/// its context): resolvers that work in pages (markAllRead) stop in time and answer with
/// what they did, instead of being cut off by the function's timeout.
pub async fn with_deadline<F: Future>(deadline: tokio::time::Instant, resolution: F) -> F::Output {
    DEADLINE.scope(deadline, resolution).await
}

/// How long the current resolution may still work, in ms, if its invocation has a deadline.
fn time_left_ms() -> Option<i64> {
    DEADLINE
        .try_with(|deadline| {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let usable = left.saturating_sub(DEADLINE_MARGIN);
            i64::try_from(usable.as_millis()).unwrap_or(i64::MAX)
        })
        .ok()
}

async fn mark_all_read(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    let budget = match time_left_ms() {
        Some(left) => left.min(chat_domain::limits::MARK_ALL_READ_BUDGET_MS),
        None => chat_domain::limits::MARK_ALL_READ_BUDGET_MS,
    };
    let summary = svc.mark_all_read_within(&caller, &app, budget).await?;
    Ok(wire::unread_summary(&summary))
}

async fn unread_summary(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    let summary = svc.unread_summary(&caller, &app).await?;
    Ok(wire::unread_summary(&summary))
}

//! The use cases: who may do what, paging, and the calls into the store.
//!
//! Access rules (ARCHITECTURE.md lists them with their error codes):
//! - the admin key manages applications and nothing else;
//! - a user token works only for its own application (another appToken: Forbidden);
//! - an AGENT sees and writes every chat of its application;
//! - a CUSTOMER sees and writes only chats whose customer it is; another customer's chat
//!   looks exactly like a chat that does not exist (null, or NotFound for writes);
//! - a message may be edited by its sender only, and deleted by its sender or any agent.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cursor::PageTokenCodec;
use crate::error::{DomainError, Result};
use crate::keyring::{Generations, Keyring};
use crate::limits::{SECRET_GRACE_DEFAULT_SECS, SECRET_GRACE_MAX_SECS};
use crate::model::*;
use crate::presence::{PresenceStore, TypingGate};
use crate::routing::{RoutingArgs, RoutingSettings};
use crate::search::{
    SEARCH_CUSTOMER_CHATS_MAX, SearchCursor, SearchIndex, SearchQuery, SearchRequest, SearchScope,
};
use crate::secrets::{AppSecret, ServerKey, generate_app_token};
use crate::store::*;
use crate::throttle::Throttle;
use crate::unread::{ReadReceipt, UnreadSummary};
use crate::webhooks::{TargetPolicy, WebhookEndpoints};

/// Who is calling, as established by the edge (authorizer or dev server) from the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No or an unusable token: every operation answers Unauthorized.
    Anonymous,
    Admin,
    User(UserIdentity),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity {
    pub app: AppToken,
    pub user_id: UserId,
    pub role: Role,
}

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(since_epoch.as_millis() as i64)
    }
}

/// A clock that moves only when told to: for tests of anything that expires.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<std::sync::atomic::AtomicI64>);

impl ManualClock {
    /// Starting at the system's time now.
    pub fn starting_now() -> Self {
        ManualClock(Arc::new(std::sync::atomic::AtomicI64::new(
            SystemClock.now().0,
        )))
    }

    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// What createApplication returns: the only time the secret is shown.
#[derive(Debug, Clone)]
pub struct AppCredentials {
    pub application: Application,
    pub secret: AppSecret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

/// Arguments of the `messages` query before validation.
#[derive(Debug, Clone, Default)]
pub struct MessagesArgs {
    pub after: Option<i64>,
    pub before: Option<i64>,
    pub limit: Option<i64>,
    pub next_token: Option<String>,
}

/// Where the next page of messages starts; carried inside the opaque nextToken.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct MessagePosition {
    after: Option<u32>,
    before: Option<u32>,
    newest_first: bool,
}

pub struct ChatService {
    store: Arc<dyn ChatStore>,
    key: ServerKey,
    pages: PageTokenCodec,
    clock: Arc<dyn Clock>,
    search: Option<Arc<dyn SearchIndex>>,
    presence: Option<Arc<dyn PresenceStore>>,
    webhooks: Option<Arc<dyn WebhookEndpoints>>,
    webhook_policy: TargetPolicy,
    attachments: Option<crate::attachments::Attachments>,
    typing: TypingGate,
    throttle: Throttle,
    keyring: Keyring,
    /// Bumped by every rotation this process performs: what was authorized before may no
    /// longer be (open subscriptions re-check their tokens when it moves).
    secrets_epoch: std::sync::atomic::AtomicU64,
}

pub(crate) fn user_of<'a>(caller: &'a Caller, app: &AppToken) -> Result<&'a UserIdentity> {
    match caller {
        Caller::Anonymous => Err(unauthorized()),
        Caller::Admin => Err(DomainError::Forbidden(
            "the admin key manages applications only; use a user token".into(),
        )),
        Caller::User(user) if &user.app == app => Ok(user),
        Caller::User(_) => Err(DomainError::Forbidden(
            "the token belongs to another application".into(),
        )),
    }
}

fn require_admin(caller: &Caller) -> Result<()> {
    match caller {
        Caller::Admin => Ok(()),
        Caller::Anonymous => Err(unauthorized()),
        Caller::User(_) => Err(DomainError::Forbidden(
            "this operation needs the admin key".into(),
        )),
    }
}

fn unauthorized() -> DomainError {
    DomainError::Unauthorized("missing or invalid Authorization token".into())
}

impl UserIdentity {
    /// The store scope of a chat as this user sees it.
    pub fn scope(&self, chat: ChatNumber) -> ChatScope {
        ChatScope {
            app: self.app.clone(),
            chat,
            customer: (self.role == Role::Customer).then(|| self.user_id.clone()),
        }
    }
}

impl ChatService {
    pub fn new(store: Arc<dyn ChatStore>, key: ServerKey, clock: Arc<dyn Clock>) -> Self {
        let pages = PageTokenCodec::new(key.clone());
        ChatService {
            store,
            key,
            pages,
            clock,
            search: None,
            presence: None,
            webhooks: None,
            webhook_policy: TargetPolicy::default(),
            attachments: None,
            typing: TypingGate::default(),
            throttle: Throttle::disabled(),
            keyring: Keyring::default(),
            secrets_epoch: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The service's clock: what "now" is for tokens, page tokens and timestamps.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// How many rotations this process has performed: a change means a token that
    /// verified before may not any more.
    pub fn secrets_epoch(&self) -> u64 {
        self.secrets_epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The service with a search index: `search_messages` answers from it. Without one,
    /// `search_messages` is an Internal error.
    pub fn with_search(mut self, index: Arc<dyn SearchIndex>) -> Self {
        self.search = Some(index);
        self
    }

    /// The service with a presence store: heartbeats, presence lists and the sweep use it.
    /// Without one, they are Internal errors.
    pub fn with_presence(mut self, store: Arc<dyn PresenceStore>) -> Self {
        self.presence = Some(store);
        self
    }

    pub(crate) fn presence_store(&self) -> Result<&dyn PresenceStore> {
        self.presence.as_deref().ok_or_else(|| {
            DomainError::internal(
                "presence is not configured on this server",
                "ChatService built without with_presence",
            )
        })
    }

    /// The service with webhook endpoints (see [`crate::webhooks`]); `policy` says where
    /// they may point. Without one, the webhook operations are Internal errors.
    pub fn with_webhooks(mut self, store: Arc<dyn WebhookEndpoints>, policy: TargetPolicy) -> Self {
        self.webhooks = Some(store);
        self.webhook_policy = policy;
        self
    }

    pub(crate) fn webhooks(&self) -> Option<&Arc<dyn WebhookEndpoints>> {
        self.webhooks.as_ref()
    }

    pub fn webhook_policy(&self) -> TargetPolicy {
        self.webhook_policy
    }

    /// The service with attachments (see [`crate::attachments`]). Without them, createUpload
    /// is an Internal error and messages have no attachments.
    pub fn with_attachments(mut self, attachments: crate::attachments::Attachments) -> Self {
        self.attachments = Some(attachments);
        self
    }

    pub fn attachments(&self) -> Option<&crate::attachments::Attachments> {
        self.attachments.as_ref()
    }

    pub(crate) fn typing_gate(&self) -> &TypingGate {
        &self.typing
    }

    pub(crate) fn pages(&self) -> &PageTokenCodec {
        &self.pages
    }

    /// The service with rate limits on sendMessage and createChat (see [`crate::throttle`]).
    /// Without one, nothing is throttled.
    pub fn with_throttle(mut self, throttle: Throttle) -> Self {
        self.throttle = throttle;
        self
    }

    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    pub fn search_index(&self) -> Option<&Arc<dyn SearchIndex>> {
        self.search.as_ref()
    }

    pub fn store(&self) -> &Arc<dyn ChatStore> {
        &self.store
    }

    pub fn server_key(&self) -> &ServerKey {
        &self.key
    }

    /// The secrets that verify `app`'s user tokens now, newest first, each with the moment
    /// it stops verifying (`None`: until the next rotation); none for an unknown
    /// application. Read from the store at most once per [`crate::keyring`] TTL.
    pub async fn token_secrets(
        &self,
        app: &AppToken,
    ) -> Result<Vec<(AppSecret, Option<Timestamp>)>> {
        let now = self.clock.now();
        let generations = match self.keyring.cached(app, now) {
            Some(generations) => generations,
            None => {
                let generations = self
                    .store
                    .application(app)
                    .await?
                    .as_ref()
                    .map(Generations::of);
                self.keyring.remember(app, generations, now);
                generations
            }
        };
        Ok(generations
            .map(|g| g.verifying(now))
            .unwrap_or_default()
            .into_iter()
            .map(|(generation, until)| (self.key.app_secret(app, generation), until))
            .collect())
    }

    // ---- applications -------------------------------------------------------------------

    pub async fn create_application(
        &self,
        caller: &Caller,
        name: AppName,
    ) -> Result<AppCredentials> {
        require_admin(caller)?;
        let application = self
            .store
            .create_application(NewApplication {
                token: generate_app_token(),
                name,
                now: self.clock.now(),
            })
            .await?;
        Ok(self.credentials(application))
    }

    /// The application with its current secret: the answer of createApplication and
    /// rotateApplicationSecret, the only times a secret is shown.
    fn credentials(&self, application: Application) -> AppCredentials {
        let secret = self
            .key
            .app_secret(&application.token, application.secret_generation);
        AppCredentials {
            application,
            secret,
        }
    }

    /// A new secret for the application; the replaced one verifies for `grace_secs` more
    /// (default [`SECRET_GRACE_DEFAULT_SECS`]), older ones not at all.
    pub async fn rotate_application_secret(
        &self,
        caller: &Caller,
        token: &AppToken,
        grace_secs: Option<i64>,
    ) -> Result<AppCredentials> {
        require_admin(caller)?;
        let grace = grace_secs.unwrap_or(SECRET_GRACE_DEFAULT_SECS);
        if !(0..=SECRET_GRACE_MAX_SECS).contains(&grace) {
            return Err(DomainError::bad_input(format!(
                "graceSeconds must be 0 to {SECRET_GRACE_MAX_SECS}"
            )));
        }
        let now = self.clock.now();
        let application = self
            .store
            .rotate_application_secret(token, Timestamp(now.0 + grace * 1000), now)
            .await?;
        // This process verifies with the new generation from now on; others within the
        // keyring's TTL.
        self.keyring.forget(token);
        self.secrets_epoch
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(self.credentials(application))
    }

    /// Renames the application and/or changes its routing (see [`crate::routing`]); answers
    /// it as it was before and after.
    pub async fn update_application(
        &self,
        caller: &Caller,
        token: &AppToken,
        name: Option<AppName>,
        routing: Option<RoutingArgs>,
    ) -> Result<(Application, Application)> {
        require_admin(caller)?;
        if name.is_none() && routing.is_none() {
            return Err(DomainError::bad_input("give a name or routing to change"));
        }
        let Some(before) = self.store.application(token).await? else {
            return Err(DomainError::application_not_found(token));
        };
        let routing = routing
            .map(|r| RoutingSettings::parse(r.enabled, r.max_open_chats, before.routing))
            .transpose()?;
        let after = self
            .store
            .update_application(
                token,
                ApplicationUpdate {
                    name,
                    routing,
                    now: self.clock.now(),
                },
            )
            .await?;
        Ok((before, after))
    }

    /// The admin sees any application; an agent sees its own; a customer none (chatsCount
    /// is the application's business volume).
    pub async fn application(
        &self,
        caller: &Caller,
        token: &AppToken,
    ) -> Result<Option<Application>> {
        match caller {
            Caller::Admin => {}
            _ => {
                let user = user_of(caller, token)?;
                if user.role != Role::Agent {
                    return Err(DomainError::Forbidden(
                        "only agents may read the application".into(),
                    ));
                }
            }
        }
        self.store.application(token).await
    }

    // ---- chats --------------------------------------------------------------------------

    pub async fn create_chat(
        &self,
        caller: &Caller,
        app: &AppToken,
        subject: Option<Subject>,
        customer_id: Option<UserId>,
    ) -> Result<Chat> {
        let user = user_of(caller, app)?;
        self.throttle.admit(user)?;
        let customer_id = match (user.role, customer_id) {
            (Role::Customer, None) => user.user_id.clone(),
            (Role::Customer, Some(id)) if id == user.user_id => id,
            (Role::Customer, Some(_)) => {
                return Err(DomainError::Forbidden(
                    "a customer can open chats only for itself".into(),
                ));
            }
            (Role::Agent, Some(id)) => id,
            (Role::Agent, None) => {
                return Err(DomainError::bad_input("an agent must give the customerId"));
            }
        };
        self.store
            .create_chat(NewChat {
                app: app.clone(),
                customer_id,
                subject,
                now: self.clock.now(),
            })
            .await
    }

    pub async fn update_chat(
        &self,
        caller: &Caller,
        app: &AppToken,
        number: ChatNumber,
        subject: Option<Option<Subject>>,
        status: Option<ChatStatus>,
    ) -> Result<Chat> {
        let user = user_of(caller, app)?;
        if subject.is_none() && status.is_none() {
            return Err(DomainError::bad_input(
                "give a subject or a status to change",
            ));
        }
        let update = ChatUpdate {
            subject,
            status,
            now: self.clock.now(),
        };
        self.store.update_chat(&user.scope(number), update).await
    }

    pub async fn chat(
        &self,
        caller: &Caller,
        app: &AppToken,
        number: ChatNumber,
    ) -> Result<Option<Chat>> {
        let user = user_of(caller, app)?;
        self.store.chat(&user.scope(number)).await
    }

    pub async fn chats(
        &self,
        caller: &Caller,
        app: &AppToken,
        status: Option<ChatStatus>,
        limit: PageSize,
        next_token: Option<&str>,
    ) -> Result<Page<Chat>> {
        let args = crate::assignment::ChatFilterArgs {
            status,
            ..Default::default()
        };
        self.inbox(caller, app, &args, limit, next_token).await
    }

    // ---- subscriptions (authorized when subscribing) -----------------------------------

    /// A chat's own feed: anyone who sees the chat (a CUSTOMER: only its own chats).
    pub async fn authorize_chat_feed(
        &self,
        caller: &Caller,
        app: &AppToken,
        chat: ChatNumber,
    ) -> Result<()> {
        let user = user_of(caller, app)?;
        match self.store.chat(&user.scope(chat)).await? {
            Some(_) => Ok(()),
            None => Err(DomainError::chat_not_found(chat)),
        }
    }

    /// A feed open to anyone of the application (availability).
    pub fn authorize_app_member(&self, caller: &Caller, app: &AppToken) -> Result<()> {
        user_of(caller, app).map(|_| ())
    }

    /// An application-wide feed (every new message, every chat change): AGENT only.
    pub fn authorize_app_feed(&self, caller: &Caller, app: &AppToken) -> Result<()> {
        let user = user_of(caller, app)?;
        if user.role != Role::Agent {
            return Err(DomainError::Forbidden(
                "only agents may subscribe to the application's feeds".into(),
            ));
        }
        Ok(())
    }

    // ---- messages -----------------------------------------------------------------------

    pub async fn send_message(
        &self,
        caller: &Caller,
        app: &AppToken,
        chat: ChatNumber,
        body: MessageBody,
        client_message_id: Option<ClientMessageId>,
    ) -> Result<Sent> {
        let user = user_of(caller, app)?;
        self.throttle.admit(user)?;
        self.store
            .send_message(NewMessage {
                scope: user.scope(chat),
                sender_id: user.user_id.clone(),
                sender_role: user.role,
                body,
                client_message_id,
                now: self.clock.now(),
            })
            .await
    }

    pub async fn message(
        &self,
        caller: &Caller,
        app: &AppToken,
        chat: ChatNumber,
        number: MessageNumber,
    ) -> Result<Option<Message>> {
        let user = user_of(caller, app)?;
        self.store.message(&user.scope(chat), number).await
    }

    /// Ascending by number. `after` alone (or nothing): the oldest `limit` above it, the
    /// nextToken continuing upwards. `before`: the newest `limit` below it, returned
    /// ascending, the nextToken continuing to older messages (infinite scroll upwards).
    pub async fn messages(
        &self,
        caller: &Caller,
        app: &AppToken,
        chat: ChatNumber,
        args: MessagesArgs,
    ) -> Result<Page<Message>> {
        let user = user_of(caller, app)?;
        let limit = PageSize::parse(args.limit)?;
        let context = format!("messages\0{app}\0{chat}");
        let position = match args.next_token.as_deref() {
            Some(token) => {
                if args.after.is_some() || args.before.is_some() {
                    return Err(DomainError::bad_input(
                        "give either nextToken or after/before, not both",
                    ));
                }
                self.pages.decode::<MessagePosition>(&context, token)?
            }
            None => {
                let after = args
                    .after
                    .map(|n| {
                        u32::try_from(n)
                            .ok()
                            .filter(|n| *n <= crate::limits::NUMBER_MAX)
                            .ok_or_else(|| {
                                DomainError::bad_input("after must be between 0 and 2147483647")
                            })
                    })
                    .transpose()?;
                let before = args
                    .before
                    .map(|n| MessageNumber::new(n).map(MessageNumber::get));
                let before = before.transpose().map_err(|_| {
                    DomainError::bad_input("before must be between 1 and 2147483647")
                })?;
                MessagePosition {
                    after,
                    before,
                    newest_first: before.is_some(),
                }
            }
        };
        let range = MessageRange {
            after: position.after,
            before: position.before,
            newest_first: position.newest_first,
            limit: limit.get() + 1,
        };
        let mut items = self.store.messages(&user.scope(chat), &range).await?;
        let more = items.len() > limit.get() as usize;
        items.truncate(limit.get() as usize);
        if position.newest_first {
            items.reverse();
        }
        let next_token = more.then(|| {
            let next = if position.newest_first {
                MessagePosition {
                    before: items.first().map(|m| m.number.get()),
                    ..position
                }
            } else {
                MessagePosition {
                    after: items.last().map(|m| m.number.get()),
                    ..position
                }
            };
            self.pages.encode(&context, &next)
        });
        Ok(Page { items, next_token })
    }

    /// Messages whose body matches the query (see [`crate::search`] for the rules), best
    /// match first then newest. With a chat: that chat's, with the access rules of
    /// `messages` (a CUSTOMER's other chat is NotFound, checked in the store before the
    /// index is asked). Without: an AGENT searches the whole application; a CUSTOMER the
    /// chats the store lists as its own (its [`SEARCH_CUSTOMER_CHATS_MAX`] most recently
    /// active), so it never sees another customer's messages. Across chats, `filter` (an
    /// inbox filter: assignee, team, status) narrows the search to the chats of that inbox
    /// (its [`SEARCH_CUSTOMER_CHATS_MAX`] most recently active), with the inbox's rules (a
    /// CUSTOMER filters by status only). Hits are shown as the store has them now: a
    /// message deleted since it was indexed is left out (so a page may be shorter than
    /// `limit` and still have a nextToken), an edited one shows its new body.
    #[allow(clippy::too_many_arguments)]
    pub async fn search_messages(
        &self,
        caller: &Caller,
        app: &AppToken,
        chat: Option<ChatNumber>,
        filter: Option<&crate::assignment::ChatFilterArgs>,
        query: SearchQuery,
        limit: PageSize,
        next_token: Option<&str>,
    ) -> Result<Page<Message>> {
        let user = user_of(caller, app)?;
        let index = self.search.as_ref().ok_or_else(|| {
            DomainError::internal("search_messages", "no search index configured")
        })?;
        if chat.is_some() && filter.is_some() {
            return Err(DomainError::bad_input(
                "filter narrows a search across chats: give chatNumber or filter, not both",
            ));
        }
        // The token is bound to the scope and the query: replayed elsewhere it is BadInput.
        let context = match chat {
            Some(chat) => format!("search\0{app}\0{chat}\0{}", query.as_str()),
            None => format!(
                "search\0{app}\0*{}\0{}{}",
                user.user_id.as_str(),
                query.as_str(),
                filter.map_or(String::new(), |f| format!(
                    "\0{}\0{}\0{}",
                    f.assignee.as_deref().unwrap_or(""),
                    f.team.as_deref().unwrap_or(""),
                    f.status.map_or("", ChatStatus::as_str)
                )),
            ),
        };
        let after = next_token
            .map(|t| self.pages.decode::<SearchCursor>(&context, t))
            .transpose()?;
        let scope = match chat {
            Some(chat) => {
                if self.store.chat(&user.scope(chat)).await?.is_none() {
                    return Err(DomainError::chat_not_found(chat));
                }
                SearchScope::Chat(chat)
            }
            None if filter.is_none() && user.role == Role::Agent => SearchScope::App,
            None => SearchScope::Chats(
                self.inbox_chat_numbers(caller, app, filter.unwrap_or(&Default::default()))
                    .await?,
            ),
        };
        let across = scope.across_chats();
        let request = SearchRequest {
            app: app.clone(),
            scope,
            query,
            after,
            limit: limit.get() + 1,
        };
        let mut hits = if matches!(&request.scope, SearchScope::Chats(c) if c.is_empty()) {
            Vec::new()
        } else {
            index.search(&request).await?
        };
        let more = hits.len() > limit.get() as usize;
        hits.truncate(limit.get() as usize);
        // The messages, read per chat (one read in the common case of one chat).
        let mut found: Vec<Message> = Vec::with_capacity(hits.len());
        let mut chats: Vec<ChatNumber> = hits.iter().map(|h| h.chat).collect();
        chats.sort_unstable();
        chats.dedup();
        for chat in chats {
            let numbers: Vec<MessageNumber> = hits
                .iter()
                .filter(|h| h.chat == chat)
                .map(|h| h.number)
                .collect();
            found.extend(
                self.store
                    .messages_by_number(&user.scope(chat), &numbers)
                    .await?,
            );
        }
        // In ranking order; deleted (or vanished) messages left out.
        let mut items = Vec::with_capacity(hits.len());
        for hit in &hits {
            if let Some(at) = found
                .iter()
                .position(|m| m.chat_number == hit.chat && m.number == hit.number)
            {
                let message = found.swap_remove(at);
                if !message.deleted {
                    items.push(message);
                }
            }
        }
        let next_token = more
            .then(|| {
                hits.last()
                    .map(|last| self.pages.encode(&context, &last.cursor(across)))
            })
            .flatten();
        Ok(Page { items, next_token })
    }

    /// The chats of the caller's inbox under `filter` as the store lists them (most recent
    /// activity first), at most [`SEARCH_CUSTOMER_CHATS_MAX`]: the scope of a CUSTOMER's
    /// search without a chat number, or of a filtered search across chats.
    async fn inbox_chat_numbers(
        &self,
        caller: &Caller,
        app: &AppToken,
        filter: &crate::assignment::ChatFilterArgs,
    ) -> Result<Vec<ChatNumber>> {
        let mut numbers = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .inbox(
                    caller,
                    app,
                    filter,
                    PageSize::parse(Some(i64::from(crate::limits::PAGE_SIZE_MAX)))?,
                    token.as_deref(),
                )
                .await?;
            numbers.extend(page.items.iter().map(|c| c.number));
            token = page.next_token;
            if token.is_none() || numbers.len() >= SEARCH_CUSTOMER_CHATS_MAX {
                break;
            }
        }
        numbers.truncate(SEARCH_CUSTOMER_CHATS_MAX);
        Ok(numbers)
    }

    pub async fn edit_message(
        &self,
        caller: &Caller,
        app: &AppToken,
        chat: ChatNumber,
        number: MessageNumber,
        body: MessageBody,
    ) -> Result<Message> {
        let user = user_of(caller, app)?;
        let change = MessageChange {
            scope: user.scope(chat),
            number,
            only_sender: Some(user.user_id.clone()),
            now: self.clock.now(),
        };
        self.store.edit_message(change, body).await
    }

    pub async fn delete_message(
        &self,
        caller: &Caller,
        app: &AppToken,
        chat: ChatNumber,
        number: MessageNumber,
    ) -> Result<Message> {
        let user = user_of(caller, app)?;
        let change = MessageChange {
            scope: user.scope(chat),
            number,
            only_sender: (user.role == Role::Customer).then(|| user.user_id.clone()),
            now: self.clock.now(),
        };
        self.store.delete_message(change).await
    }

    // ---- unread -------------------------------------------------------------------------

    /// Moves the caller's watermark forward to `up_to` (default: the chat's last message).
    pub async fn mark_chat_read(
        &self,
        caller: &Caller,
        app: &AppToken,
        chat: ChatNumber,
        up_to: Option<MessageNumber>,
    ) -> Result<ReadReceipt> {
        let user = user_of(caller, app)?;
        self.store
            .mark_chat_read(MarkRead {
                scope: user.scope(chat),
                reader: user.clone(),
                up_to,
            })
            .await
    }

    pub async fn unread_summary(&self, caller: &Caller, app: &AppToken) -> Result<UnreadSummary> {
        let user = user_of(caller, app)?;
        self.store.unread_summary(user).await
    }

    /// Marks every chat the caller sees as read up to its last message, a page of chats at
    /// a time, and answers with the caller's summary afterwards (0 / 0 unless messages
    /// arrived meanwhile). Bounded: it starts no new page after
    /// [`MARK_ALL_READ_BUDGET_MS`](crate::limits::MARK_ALL_READ_BUDGET_MS); the summary then
    /// shows what is left and another call continues.
    pub async fn mark_all_read(&self, caller: &Caller, app: &AppToken) -> Result<UnreadSummary> {
        let budget = crate::limits::MARK_ALL_READ_BUDGET_MS;
        self.mark_all_read_within(caller, app, budget).await
    }

    /// [`ChatService::mark_all_read`] that starts no new page after `budget_ms` (a request
    /// with less time left than the default budget: a Lambda's remaining time). The first
    /// page is always marked.
    pub async fn mark_all_read_within(
        &self,
        caller: &Caller,
        app: &AppToken,
        budget_ms: i64,
    ) -> Result<UnreadSummary> {
        use crate::limits::MARK_ALL_READ_PAGE;
        let user = user_of(caller, app)?;
        let deadline = self.clock.now().0.saturating_add(budget_ms.max(0));
        let mut after = None;
        loop {
            let page = self
                .store
                .unread_chats(user, after, MARK_ALL_READ_PAGE)
                .await?;
            let Some(last) = page.last().copied() else {
                break;
            };
            self.store.mark_chats_read(user, &page).await?;
            after = Some(last);
            if page.len() < MARK_ALL_READ_PAGE as usize || self.clock.now().0 >= deadline {
                break;
            }
        }
        self.store.unread_summary(user).await
    }
}

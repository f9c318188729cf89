//! A real-time credential lives no longer than its token.
//!
//! A WebSocket connection (and, on AppSync's protocol, a `start` with its own token) is
//! authorized once, at its start; an [`Authority`] keeps checking that the token still
//! would be: it ends when the token's `exp` passes, when a rotation makes it stop verifying
//! (a secret rotated past its grace), or when its application is gone. The transport then
//! ends what the credential authorized, with the reason, and a connection whose credential
//! ended starts nothing new.
//!
//! Cost: one timer per credential, due at the token's end and, between, every
//! [`AUTHORITY_RECHECK`] (a clock comparison; the token is verified again only when it is
//! due or this process rotated a secret meanwhile). The periodic look also catches a clock
//! that moved, and rotations, which this process applies at once.

use std::sync::Arc;
use std::time::Duration;

use chat_appsync::Authenticator;
use chat_appsync::auth::CLOCK_SKEW_SECS;
use chat_domain::Caller;

/// How often a credential compares the clock with its end, at most (it also wakes at the
/// end itself).
pub const AUTHORITY_RECHECK: Duration = Duration::from_secs(10);

/// The close reason (and error message) when a credential ended: the token is no longer
/// valid; the client should reconnect with a fresh one.
pub fn ended_reason(why: &str) -> String {
    format!("{why}: reconnect with a fresh token")
}

/// One credential's authority: the token that established it and until when it holds.
pub struct Authority {
    auth: Arc<Authenticator>,
    /// `None` for the admin key, whose authority ends only with the server.
    token: Option<String>,
    /// Unix seconds: the token's `exp` (or its secret's grace end).
    valid_until: Option<u64>,
    /// The service's rotation count when the token last verified.
    epoch: u64,
    recheck: Duration,
    /// When [`Authority::ended`] looks next: kept here so that a connection busy with other
    /// work (which re-creates that future each time round its loop) does not postpone it.
    next_check: tokio::time::Instant,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("valid_until", &self.valid_until)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Authenticates `token`; the caller and its authority, or why it was refused.
    pub async fn establish(
        auth: &Arc<Authenticator>,
        token: Option<&str>,
        recheck: Duration,
    ) -> Result<(Caller, Authority), String> {
        // Real time is for users: a token that is not a JWT is refused without comparing it
        // to the admin key, so a WebSocket is no oracle for guessing it.
        if token.is_some_and(crate::admin_guard::is_admin_shaped) {
            return Err(
                "a user token (JWT) is required: the admin key manages applications over HTTP only"
                    .into(),
            );
        }
        let epoch = auth.service().secrets_epoch();
        let (caller, valid_until) = auth
            .authenticate_until(token)
            .await
            .map_err(|e| e.to_string())?;
        let token = match caller {
            Caller::User(_) => token.map(str::to_owned),
            _ => None,
        };
        let mut authority = Authority {
            auth: auth.clone(),
            token,
            valid_until,
            epoch,
            recheck,
            next_check: tokio::time::Instant::now(),
        };
        authority.schedule();
        Ok((caller, authority))
    }

    /// The next look: at the token's end or after [`Authority::recheck`], whichever is first.
    fn schedule(&mut self) {
        let left = self.valid_until.map(|until| {
            Duration::from_secs(
                until
                    .saturating_add(CLOCK_SKEW_SECS)
                    .saturating_sub(self.now_secs()),
            )
        });
        let wait = left.map_or(self.recheck, |left| left.min(self.recheck));
        self.next_check = tokio::time::Instant::now() + wait.max(Duration::from_millis(1));
    }

    fn now_secs(&self) -> u64 {
        u64::try_from(self.auth.service().now().0 / 1000).unwrap_or(0)
    }

    /// Whether the token must be verified again: its end (with the skew tokens are given)
    /// has passed, or a secret was rotated since it last verified.
    fn due(&self) -> bool {
        let expired = self
            .valid_until
            .is_some_and(|until| until.saturating_add(CLOCK_SKEW_SECS) <= self.now_secs());
        expired || self.auth.service().secrets_epoch() != self.epoch
    }

    /// Verifies the token again when it is due: `Err` with the reason once it no longer
    /// verifies.
    pub async fn check(&mut self) -> Result<(), String> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        if !self.due() {
            return Ok(());
        }
        let epoch = self.auth.service().secrets_epoch();
        match self.auth.authenticate_until(Some(token)).await {
            Ok((_, until)) => {
                self.valid_until = until;
                self.epoch = epoch;
                Ok(())
            }
            Err(error) => Err(ended_reason(&error.to_string())),
        }
    }

    /// When it is time (`next_check` has come by `now`), verifies the token again if it is
    /// due and schedules the next look: `Err` with the reason once it no longer verifies.
    async fn look(&mut self, now: tokio::time::Instant) -> Result<(), String> {
        if self.token.is_none() || self.next_check > now {
            return Ok(());
        }
        let checked = self.check().await;
        self.schedule();
        checked
    }

    /// Resolves, with the reason, when the credential's authority has ended; pending
    /// forever for the admin key.
    pub async fn ended(&mut self) -> String {
        if self.token.is_none() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep_until(self.next_check).await;
            if let Err(reason) = self.look(tokio::time::Instant::now()).await {
                return reason;
            }
        }
    }
}

/// What [`Credentials::lost`] found ended.
#[derive(Debug)]
pub enum Lost {
    /// The connection's own credential: close the connection with the reason.
    Connection(String),
    /// Credentials that operations brought themselves (AppSync's per-`start` token): end
    /// those operations, with the reasons.
    Operations(Vec<(String, String)>),
}

/// A connection's credentials: its own, and those some of its operations brought (by
/// operation id).
#[derive(Debug)]
pub struct Credentials {
    pub connection: Authority,
    own: std::collections::HashMap<String, Authority>,
}

impl Credentials {
    pub fn new(connection: Authority) -> Self {
        Credentials {
            connection,
            own: std::collections::HashMap::new(),
        }
    }

    /// An operation that runs on a credential of its own.
    pub fn insert(&mut self, operation: String, authority: Authority) {
        self.own.insert(operation, authority);
    }

    /// Whether the operation runs on a credential of its own.
    pub fn has_own(&self, operation: &str) -> bool {
        self.own.contains_key(operation)
    }

    /// The operation ended: its credential, if it had one, goes.
    pub fn remove(&mut self, operation: &str) {
        self.own.remove(operation);
    }

    /// Resolves when a credential has ended (the connection's first).
    pub async fn lost(&mut self) -> Lost {
        if self.own.is_empty() {
            return Lost::Connection(self.connection.ended().await);
        }
        loop {
            let next = self
                .own
                .values()
                .chain(std::iter::once(&self.connection))
                .filter(|a| a.token.is_some())
                .map(|a| a.next_check)
                .min();
            // Only credentials that never end (the admin key): nothing to look at.
            let Some(next) = next else {
                return std::future::pending().await;
            };
            tokio::time::sleep_until(next).await;
            let now = tokio::time::Instant::now();
            if let Err(reason) = self.connection.look(now).await {
                return Lost::Connection(reason);
            }
            let mut lost = Vec::new();
            for (operation, authority) in &mut self.own {
                if let Err(reason) = authority.look(now).await {
                    lost.push((operation.clone(), reason));
                }
            }
            if !lost.is_empty() {
                for (operation, _) in &lost {
                    self.own.remove(operation);
                }
                return Lost::Operations(lost);
            }
        }
    }
}

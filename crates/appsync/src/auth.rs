//! Authentication: the admin key and user JWTs (HS256, signed with the application's
//! secret, claims `{sub, app, role, exp}`, optionally `iat` and `nbf`). Times are checked
//! against the service's clock, with [`CLOCK_SKEW_SECS`] of tolerance, and a token may live
//! at most the configured lifetime ([`TOKEN_LIFETIME_MAX_SECS`] by default). Which secrets verify an application's tokens
//! comes from the service ([`ChatService::token_secrets`]): the current one, and after a
//! rotation the replaced one until its grace period ends.

use std::sync::Arc;

use chat_domain::limits::TOKEN_LIFETIME_MAX_SECS;
use chat_domain::{AppToken, Caller, ChatService, DomainError, Role, UserId, UserIdentity};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Seconds of clock skew tolerated on `exp`.
pub const CLOCK_SKEW_SECS: u64 = 30;

/// The claims of a user token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserClaims {
    pub sub: String,
    pub app: String,
    pub role: String,
    pub exp: u64,
    /// Issued at (unix seconds): the lifetime is counted from it when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Verifies `Authorization` headers. Built once per process.
#[derive(Clone)]
pub struct Authenticator {
    admin_key: String,
    service: Arc<ChatService>,
    max_lifetime_secs: u64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator(<redacted>)")
    }
}

fn invalid_token(why: &str) -> DomainError {
    DomainError::Unauthorized(format!("invalid token: {why}"))
}

impl Authenticator {
    /// `service` knows the applications' secret generations (and caches them).
    pub fn new(admin_key: impl Into<String>, service: Arc<ChatService>) -> Self {
        Authenticator {
            admin_key: admin_key.into(),
            service,
            max_lifetime_secs: TOKEN_LIFETIME_MAX_SECS,
        }
    }

    /// Refuses user tokens that live longer than `secs` (`exp` minus `iat`, or minus now).
    pub fn with_max_token_lifetime(mut self, secs: u64) -> Self {
        self.max_lifetime_secs = secs;
        self
    }

    /// The service whose clock and secrets this authenticator uses.
    pub fn service(&self) -> &Arc<ChatService> {
        &self.service
    }

    /// No header: [`Caller::Anonymous`] (every operation then answers Unauthorized). A header
    /// that is neither the admin key nor a valid user token: Unauthorized.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Caller, DomainError> {
        self.authenticate_until(header)
            .await
            .map(|(caller, _)| caller)
    }

    /// [`Authenticator::authenticate`], with how long a user's answer holds (unix seconds):
    /// the token's `exp`, or sooner when it verified with a secret in its grace period. The
    /// Lambda authorizer's TTL.
    pub async fn authenticate_until(
        &self,
        header: Option<&str>,
    ) -> Result<(Caller, Option<u64>), DomainError> {
        let Some(raw) = header else {
            return Ok((Caller::Anonymous, None));
        };
        // Accept "Bearer <token>" too: many HTTP clients add it by habit.
        let token = raw.trim();
        let token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
        if token.is_empty() {
            return Ok((Caller::Anonymous, None));
        }
        if constant_time_eq(token.as_bytes(), self.admin_key.as_bytes()) {
            return Ok((Caller::Admin, None));
        }
        let (user, expires_at) = self.verify_user_token(token).await?;
        Ok((Caller::User(user), Some(expires_at)))
    }

    async fn verify_user_token(&self, token: &str) -> Result<(UserIdentity, u64), DomainError> {
        use jsonwebtoken::errors::ErrorKind;
        // The claimed app names the keys; a forged claim derives keys that fail the check.
        let unverified: UserClaims = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| invalid_token("not a JWT with claims sub, app, role and exp"))?;
        let app = AppToken::parse(&unverified.app).map_err(|_| invalid_token("bad app claim"))?;
        let secrets = self.service.token_secrets(&app).await?;
        if secrets.is_empty() {
            return Err(invalid_token("unknown application"));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Times are checked below against the service's clock, not the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        // Newest secret first; only a signature that does not match moves on to the next.
        let mut verified = None;
        for (secret, until) in &secrets {
            let key = DecodingKey::from_secret(secret.expose().as_bytes());
            match jsonwebtoken::decode::<UserClaims>(token, &key, &validation) {
                Ok(data) => {
                    verified = Some((data.claims, *until));
                    break;
                }
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                Err(e) => {
                    return Err(match e.kind() {
                        ErrorKind::ExpiredSignature => invalid_token("expired"),
                        ErrorKind::InvalidAlgorithm => invalid_token("only HS256 is accepted"),
                        _ => invalid_token("malformed"),
                    });
                }
            }
        }
        let Some((claims, until)) = verified else {
            return Err(invalid_token("bad signature"));
        };
        self.check_times(&claims)?;
        // A token signed with a secret in its grace period holds until the grace ends.
        let expires_at = match until {
            Some(until) => claims.exp.min(u64::try_from(until.0 / 1000).unwrap_or(0)),
            None => claims.exp,
        };
        let user = UserIdentity {
            app,
            user_id: UserId::parse(&claims.sub).map_err(|_| invalid_token("bad sub claim"))?,
            role: Role::parse(&claims.role)
                .map_err(|_| invalid_token("role must be AGENT or CUSTOMER"))?,
        };
        Ok((user, expires_at))
    }
}

impl Authenticator {
    /// `exp` (required), `nbf` and `iat` against the service's clock, and the lifetime.
    fn check_times(&self, claims: &UserClaims) -> Result<(), DomainError> {
        let now = u64::try_from(self.service.now().0 / 1000).unwrap_or(0);
        if claims.exp.saturating_add(CLOCK_SKEW_SECS) <= now {
            return Err(invalid_token("expired"));
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + CLOCK_SKEW_SECS) {
            return Err(invalid_token("not valid yet (nbf)"));
        }
        if claims.iat.is_some_and(|iat| iat > now + CLOCK_SKEW_SECS) {
            return Err(invalid_token("issued in the future (iat)"));
        }
        let from = claims.iat.unwrap_or(now);
        if claims.exp.saturating_sub(from) > self.max_lifetime_secs {
            return Err(invalid_token(&format!(
                "lives longer than {} s (exp - iat, or exp - now without iat)",
                self.max_lifetime_secs
            )));
        }
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Signs a user token the way an application's backend would. For tests, the dev tour and
/// `chat-server mint-token`; production backends use any JWT library.
pub fn mint_user_token(
    secret: &str,
    app: &str,
    sub: &str,
    role: Role,
    expires_at_unix: u64,
) -> Result<String, DomainError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = UserClaims {
        sub: sub.to_owned(),
        app: app.to_owned(),
        role: role.as_str().to_owned(),
        exp: expires_at_unix,
        iat: Some(now.min(expires_at_unix)),
        nbf: None,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| DomainError::internal("signing a token", e))
}

/// The `identity.resolverContext` our authorizer returns (AppSync requires string values).
pub fn resolver_context(caller: &Caller) -> Value {
    match caller {
        Caller::Anonymous => Value::Null,
        Caller::Admin => json!({ "kind": "admin" }),
        Caller::User(user) => json!({
            "kind": "user",
            "app": user.app.as_str(),
            "sub": user.user_id.as_str(),
            "role": user.role.as_str(),
        }),
    }
}

/// Reads the caller back from a resolverContext. Anything unexpected is Anonymous: the
/// resolvers then refuse with Unauthorized rather than guess.
pub fn caller_from_resolver_context(context: &Value) -> Caller {
    let Some(map) = context.as_object() else {
        return Caller::Anonymous;
    };
    let field = |name: &str| map.get(name).and_then(Value::as_str);
    match field("kind") {
        Some("admin") => Caller::Admin,
        Some("user") => {
            let user = (|| {
                Some(UserIdentity {
                    app: AppToken::parse(field("app")?).ok()?,
                    user_id: UserId::parse(field("sub")?).ok()?,
                    role: Role::parse(field("role")?).ok()?,
                })
            })();
            user.map_or(Caller::Anonymous, Caller::User)
        }
        _ => Caller::Anonymous,
    }
}

/// The resolverContext as the string map a Lambda authorizer response carries.
pub fn resolver_context_map(caller: &Caller) -> Map<String, Value> {
    match resolver_context(caller) {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine as _;
    use chat_domain::{AppName, ServerKey, SystemClock};

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    /// An authenticator over an in-memory store with one application: its token and secret.
    pub(crate) async fn setup_with(
        admin_key: &str,
    ) -> (Authenticator, Arc<ChatService>, AppToken, String) {
        let store = Arc::new(chat_embedded::SqliteStore::open_in_memory().unwrap());
        let service = Arc::new(ChatService::new(
            store,
            ServerKey::generate(),
            Arc::new(SystemClock),
        ));
        let created = service
            .create_application(&Caller::Admin, AppName::parse("Test").unwrap())
            .await
            .unwrap();
        (
            Authenticator::new(admin_key, service.clone()),
            service,
            created.application.token,
            created.secret.expose().to_owned(),
        )
    }

    async fn setup() -> (Authenticator, Arc<ChatService>, AppToken, String) {
        setup_with("admin-secret-key").await
    }

    #[tokio::test]
    async fn admin_key_and_missing_header() {
        let (auth, ..) = setup().await;
        assert_eq!(
            auth.authenticate(Some("admin-secret-key")).await.unwrap(),
            Caller::Admin
        );
        assert_eq!(
            auth.authenticate(Some("Bearer admin-secret-key"))
                .await
                .unwrap(),
            Caller::Admin
        );
        assert_eq!(auth.authenticate(None).await.unwrap(), Caller::Anonymous);
        assert!(auth.authenticate(Some("admin-secret-kez")).await.is_err());
    }

    #[tokio::test]
    async fn valid_user_token_gives_the_user() {
        let (auth, _, app, secret) = setup().await;
        let token = mint_user_token(&secret, app.as_str(), "u1", Role::Agent, now() + 60).unwrap();
        match auth.authenticate(Some(&token)).await.unwrap() {
            Caller::User(u) => {
                assert_eq!(u.app, app);
                assert_eq!(u.user_id.as_str(), "u1");
                assert_eq!(u.role, Role::Agent);
            }
            other => panic!("expected a user, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn expired_forged_and_alg_none_tokens_are_unauthorized() {
        let (auth, service, app, secret) = setup().await;
        let other = service
            .create_application(&Caller::Admin, AppName::parse("Other").unwrap())
            .await
            .unwrap();
        let a = app.as_str();
        let expired = mint_user_token(&secret, a, "u1", Role::Agent, now() - 120).unwrap();
        let wrong_key = mint_user_token("sk_guess", a, "u1", Role::Agent, now() + 60).unwrap();
        // Signed for `app` but claiming another app: the other app's key does not verify it.
        let other_app = mint_user_token(
            &secret,
            other.application.token.as_str(),
            "u1",
            Role::Agent,
            now() + 60,
        )
        .unwrap();
        // A well-signed token of an application that does not exist.
        let unknown = mint_user_token(
            service
                .server_key()
                .app_secret(&AppToken::parse("app_gone").unwrap(), 1)
                .expose(),
            "app_gone",
            "u1",
            Role::Agent,
            now() + 60,
        )
        .unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(format!(
                r#"{{"sub":"u1","app":"{a}","role":"AGENT","exp":{}}}"#,
                now() + 60
            ))
        );
        for (token, why) in [
            (expired, "expired"),
            (wrong_key, "bad signature"),
            (other_app, "bad signature"),
            (unknown, "unknown application"),
            (none, "malformed"),
            ("garbage".into(), "not a JWT"),
            ("a.b.c".into(), "not a JWT"),
        ] {
            let err = auth.authenticate(Some(&token)).await.unwrap_err();
            assert_eq!(err.code(), chat_domain::ErrorCode::Unauthorized, "{token}");
            assert!(err.to_string().contains(why), "{token}: {err}");
        }
    }

    #[tokio::test]
    async fn a_rotated_secret_verifies_during_its_grace_only() {
        let (auth, service, app, old) = setup().await;
        let a = app.as_str();
        let before = mint_user_token(&old, a, "u1", Role::Agent, now() + 3600).unwrap();
        auth.authenticate(Some(&before)).await.unwrap();

        // Rotation with a grace period: both secrets verify; the old one's answer holds
        // until the grace ends, not until the token's exp.
        let rotated = service
            .rotate_application_secret(&Caller::Admin, &app, Some(60))
            .await
            .unwrap();
        assert_eq!(rotated.application.secret_generation, 2);
        let new = rotated.secret.expose().to_owned();
        assert_ne!(new, old);
        let fresh = mint_user_token(&new, a, "u1", Role::Agent, now() + 3600).unwrap();
        let (_, until) = auth.authenticate_until(Some(&fresh)).await.unwrap();
        assert_eq!(until, Some(now() + 3600));
        let (_, until) = auth.authenticate_until(Some(&before)).await.unwrap();
        let until = until.unwrap();
        assert!(until <= now() + 60 && until + 5 >= now() + 60, "{until}");

        // Rotating again without grace: only the newest verifies.
        let again = service
            .rotate_application_secret(&Caller::Admin, &app, Some(0))
            .await
            .unwrap();
        for token in [&before, &fresh] {
            let err = auth.authenticate(Some(token)).await.unwrap_err();
            assert!(err.to_string().contains("bad signature"), "{err}");
        }
        let newest = mint_user_token(again.secret.expose(), a, "u1", Role::Agent, now() + 60);
        auth.authenticate(Some(&newest.unwrap())).await.unwrap();
    }

    #[tokio::test]
    async fn bad_role_claim_is_unauthorized() {
        let (auth, _, app, secret) = setup().await;
        let claims = UserClaims {
            sub: "u1".into(),
            app: app.as_str().into(),
            role: "ADMIN".into(),
            exp: now() + 60,
            iat: None,
            nbf: None,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        assert!(auth.authenticate(Some(&token)).await.is_err());
    }

    fn sign(secret: &str, claims: &UserClaims) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn lifetime_nbf_and_iat_are_checked_against_the_services_clock() {
        let clock = chat_domain::ManualClock::starting_now();
        let store = Arc::new(chat_embedded::SqliteStore::open_in_memory().unwrap());
        let service = Arc::new(ChatService::new(
            store,
            ServerKey::generate(),
            Arc::new(clock.clone()),
        ));
        let created = service
            .create_application(&Caller::Admin, AppName::parse("Test").unwrap())
            .await
            .unwrap();
        let (app, secret) = (
            created.application.token,
            created.secret.expose().to_owned(),
        );
        let auth = Authenticator::new("admin", service).with_max_token_lifetime(3600);
        let t = now();
        let claims = |exp: u64, iat: Option<u64>, nbf: Option<u64>| UserClaims {
            sub: "u1".into(),
            app: app.as_str().into(),
            role: "AGENT".into(),
            exp,
            iat,
            nbf,
        };
        let error = |claims: UserClaims| {
            let token = sign(&secret, &claims);
            let auth = auth.clone();
            async move {
                auth.authenticate(Some(&token))
                    .await
                    .unwrap_err()
                    .to_string()
            }
        };
        // A day-long token is refused where the lifetime is an hour, with or without iat.
        assert!(
            error(claims(t + 86_400, Some(t), None))
                .await
                .contains("longer than 3600 s")
        );
        assert!(
            error(claims(t + 86_400, None, None))
                .await
                .contains("longer than 3600 s")
        );
        // nbf and iat in the future (beyond the skew) are refused.
        assert!(
            error(claims(t + 600, None, Some(t + 300)))
                .await
                .contains("nbf")
        );
        assert!(
            error(claims(t + 600, Some(t + 300), None))
                .await
                .contains("iat")
        );
        // An hour-long token is fine, until the clock passes its exp (and the skew).
        let token = sign(&secret, &claims(t + 3600, Some(t), Some(t)));
        auth.authenticate(Some(&token)).await.unwrap();
        clock.advance(std::time::Duration::from_secs(3600 + CLOCK_SKEW_SECS));
        let expired = auth.authenticate(Some(&token)).await.unwrap_err();
        assert!(expired.to_string().contains("expired"), "{expired}");
    }

    #[test]
    fn resolver_context_round_trips() {
        let user = Caller::User(UserIdentity {
            app: AppToken::parse("app_x").unwrap(),
            user_id: UserId::parse("c1").unwrap(),
            role: Role::Customer,
        });
        for caller in [Caller::Admin, user, Caller::Anonymous] {
            assert_eq!(
                caller_from_resolver_context(&resolver_context(&caller)),
                caller
            );
        }
        assert_eq!(
            caller_from_resolver_context(&json!({"kind": "user", "app": "app_x"})),
            Caller::Anonymous
        );
    }
}

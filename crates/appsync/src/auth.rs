//! Authentication: the admin key and user JWTs (HS256, signed with the application's
//! secret, claims `{sub, app, role, exp}`).

use chat_domain::{AppToken, Caller, DomainError, Role, ServerKey, UserId, UserIdentity};
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
}

/// Verifies `Authorization` headers. Built once per process.
#[derive(Clone)]
pub struct Authenticator {
    admin_key: String,
    server_key: ServerKey,
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
    pub fn new(admin_key: impl Into<String>, server_key: ServerKey) -> Self {
        Authenticator {
            admin_key: admin_key.into(),
            server_key,
        }
    }

    /// No header: [`Caller::Anonymous`] (every operation then answers Unauthorized). A header
    /// that is neither the admin key nor a valid user token: Unauthorized.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Caller, DomainError> {
        self.authenticate_until(header).map(|(caller, _)| caller)
    }

    /// [`Authenticator::authenticate`], with the user token's `exp` (unix seconds) for a
    /// user: how long the answer may be cached (the Lambda authorizer's TTL).
    pub fn authenticate_until(
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
        let (user, expires_at) = self.verify_user_token(token)?;
        Ok((Caller::User(user), Some(expires_at)))
    }

    fn verify_user_token(&self, token: &str) -> Result<(UserIdentity, u64), DomainError> {
        // The claimed app names the key; a forged claim derives a key that fails the check.
        let unverified: UserClaims = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| invalid_token("not a JWT with claims sub, app, role and exp"))?;
        let app = AppToken::parse(&unverified.app).map_err(|_| invalid_token("bad app claim"))?;
        let secret = self.server_key.app_secret(&app, 1);
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = CLOCK_SKEW_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<UserClaims>(
            token,
            &DecodingKey::from_secret(secret.expose().as_bytes()),
            &validation,
        )
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => invalid_token("expired"),
            jsonwebtoken::errors::ErrorKind::InvalidSignature => invalid_token("bad signature"),
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                invalid_token("only HS256 is accepted")
            }
            _ => invalid_token("malformed"),
        })?;
        let claims = data.claims;
        let user = UserIdentity {
            app,
            user_id: UserId::parse(&claims.sub).map_err(|_| invalid_token("bad sub claim"))?,
            role: Role::parse(&claims.role)
                .map_err(|_| invalid_token("role must be AGENT or CUSTOMER"))?,
        };
        Ok((user, claims.exp))
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
    let claims = UserClaims {
        sub: sub.to_owned(),
        app: app.to_owned(),
        role: role.as_str().to_owned(),
        exp: expires_at_unix,
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
mod tests {
    use super::*;
    use base64::Engine as _;

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn setup() -> (Authenticator, ServerKey, AppToken) {
        let key = ServerKey::generate();
        let app = AppToken::parse("app_test").unwrap();
        (
            Authenticator::new("admin-secret-key", key.clone()),
            key,
            app,
        )
    }

    #[test]
    fn admin_key_and_missing_header() {
        let (auth, _, _) = setup();
        assert_eq!(
            auth.authenticate(Some("admin-secret-key")).unwrap(),
            Caller::Admin
        );
        assert_eq!(
            auth.authenticate(Some("Bearer admin-secret-key")).unwrap(),
            Caller::Admin
        );
        assert_eq!(auth.authenticate(None).unwrap(), Caller::Anonymous);
        assert!(auth.authenticate(Some("admin-secret-kez")).is_err());
    }

    #[test]
    fn valid_user_token_gives_the_user() {
        let (auth, key, app) = setup();
        let secret = key.app_secret(&app, 1);
        let token =
            mint_user_token(secret.expose(), "app_test", "u1", Role::Agent, now() + 60).unwrap();
        match auth.authenticate(Some(&token)).unwrap() {
            Caller::User(u) => {
                assert_eq!(u.app, app);
                assert_eq!(u.user_id.as_str(), "u1");
                assert_eq!(u.role, Role::Agent);
            }
            other => panic!("expected a user, got {other:?}"),
        }
    }

    #[test]
    fn expired_forged_and_alg_none_tokens_are_unauthorized() {
        let (auth, key, app) = setup();
        let secret = key.app_secret(&app, 1);
        let expired =
            mint_user_token(secret.expose(), "app_test", "u1", Role::Agent, now() - 120).unwrap();
        let wrong_key =
            mint_user_token("sk_guess", "app_test", "u1", Role::Agent, now() + 60).unwrap();
        // Signed for app_test but claiming another app: the other app's key does not verify it.
        let other_app =
            mint_user_token(secret.expose(), "app_other", "u1", Role::Agent, now() + 60).unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(format!(
                r#"{{"sub":"u1","app":"app_test","role":"AGENT","exp":{}}}"#,
                now() + 60
            ))
        );
        for token in [
            expired,
            wrong_key,
            other_app,
            none,
            "garbage".into(),
            "a.b.c".into(),
        ] {
            let err = auth.authenticate(Some(&token)).unwrap_err();
            assert_eq!(err.code(), chat_domain::ErrorCode::Unauthorized, "{token}");
        }
    }

    #[test]
    fn bad_role_claim_is_unauthorized() {
        let (auth, key, app) = setup();
        let secret = key.app_secret(&app, 1);
        let claims = UserClaims {
            sub: "u1".into(),
            app: "app_test".into(),
            role: "ADMIN".into(),
            exp: now() + 60,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.expose().as_bytes()),
        )
        .unwrap();
        assert!(auth.authenticate(Some(&token)).is_err());
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

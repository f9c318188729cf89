//! The AppSync Lambda authorizer: the `Authorization` header in, `isAuthorized`, the
//! caller as `resolverContext` (read back by every resolver with
//! [`caller_from_resolver_context`](crate::auth::caller_from_resolver_context)) and a TTL
//! out. AppSync caches the answer per token for the TTL, so a user token's answer never
//! outlives the token.
//!
//! Only a bad token is denied. When the authorizer cannot decide (the table could not be
//! read: a throttle, a timeout), [`authorize`] fails instead: a denial would sign a valid
//! user out (clients treat 401 as "your token is bad"), while a failed invocation is an
//! error AppSync does not cache and that the authorizer's error alarm counts.

use std::collections::HashMap;

use aws_lambda_events::appsync::{AppSyncLambdaAuthorizerRequest, AppSyncLambdaAuthorizerResponse};
use chat_domain::{Caller, DomainError};
use serde_json::Value;

use crate::auth::{Authenticator, resolver_context_map};

/// How long AppSync may cache an answer, in seconds, at most (AppSync allows 0 to 3600).
pub const DEFAULT_TTL_SECS: i64 = 300;

/// The authorizer could not decide whether the token is good (an internal error, with its
/// context for the log; never the token).
#[derive(Debug, thiserror::Error)]
#[error("cannot authorize now: {0}")]
pub struct AuthorizerFault(pub DomainError);

/// Answers one authorization request. `now_unix` bounds a user's TTL by the token's `exp`.
/// A missing, invalid or expired token is `isAuthorized: false` with TTL 0 (denials are
/// not cached, so a fixed clock or a freshly minted token is not refused for minutes).
/// An internal error is an [`AuthorizerFault`], not a denial.
pub async fn authorize(
    authenticator: &Authenticator,
    request: &AppSyncLambdaAuthorizerRequest,
    max_ttl_secs: i64,
    now_unix: u64,
) -> Result<AppSyncLambdaAuthorizerResponse, AuthorizerFault> {
    let token = request.authorization_token.as_deref();
    let mut response = AppSyncLambdaAuthorizerResponse::default();
    let caller = match authenticator.authenticate_until(token).await {
        Ok((Caller::Anonymous, _)) => {
            tracing::info!("denied: no token");
            None
        }
        Ok(verified) => Some(verified),
        Err(error @ DomainError::Internal { .. }) => {
            tracing::error!(%error, "cannot authorize: failing, not denying");
            return Err(AuthorizerFault(error));
        }
        Err(error) => {
            tracing::info!(%error, "denied");
            None
        }
    };
    let Some((caller, expires_at)) = caller else {
        response.is_authorized = false;
        response.ttl_override = Some(0);
        return Ok(response);
    };
    let ttl = match expires_at {
        Some(exp) => exp.saturating_sub(now_unix).min(max_ttl_secs.max(0) as u64) as i64,
        None => max_ttl_secs.max(0),
    };
    response.is_authorized = true;
    response.resolver_context = resolver_context_map(&caller)
        .into_iter()
        .collect::<HashMap<String, Value>>();
    response.ttl_override = Some(ttl);
    Ok(response)
}

/// The `exp` of a token that has already been verified.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{caller_from_resolver_context, mint_user_token};
    use chat_domain::{AppToken, Role};
    use serde_json::json;

    fn request(token: Option<&str>) -> AppSyncLambdaAuthorizerRequest {
        serde_json::from_value(json!({
            "authorizationToken": token,
            "requestContext": {
                "apiId": "api", "accountId": "1", "requestId": "r",
                "queryString": "{ chats(appToken: \"app_x\") { items { number } } }",
                "operationName": null, "variables": {}
            }
        }))
        .unwrap()
    }

    async fn setup() -> (Authenticator, AppToken, String) {
        let (auth, _, app, secret) = crate::auth::tests::setup_with("adm_key").await;
        (auth, app, secret)
    }

    #[tokio::test]
    async fn a_user_token_is_authorized_with_its_caller_until_it_expires() {
        let (auth, app, secret) = setup().await;
        let now = jsonwebtoken::get_current_timestamp();
        let token = mint_user_token(&secret, app.as_str(), "u1", Role::Customer, now + 90).unwrap();
        let answer = authorize(&auth, &request(Some(&token)), DEFAULT_TTL_SECS, now)
            .await
            .unwrap();
        assert!(answer.is_authorized);
        assert_eq!(answer.ttl_override, Some(90));
        let context = serde_json::to_value(&answer.resolver_context).unwrap();
        assert_eq!(
            context,
            json!({"kind": "user", "app": app.as_str(), "sub": "u1", "role": "CUSTOMER"})
        );
        assert!(matches!(
            caller_from_resolver_context(&context),
            Caller::User(_)
        ));
    }

    #[tokio::test]
    async fn the_admin_key_is_authorized_for_the_default_ttl() {
        let (auth, ..) = setup().await;
        let answer = authorize(&auth, &request(Some("adm_key")), DEFAULT_TTL_SECS, 0)
            .await
            .unwrap();
        assert!(answer.is_authorized);
        assert_eq!(answer.ttl_override, Some(DEFAULT_TTL_SECS));
        assert_eq!(
            caller_from_resolver_context(&serde_json::to_value(&answer.resolver_context).unwrap()),
            Caller::Admin
        );
    }

    #[tokio::test]
    async fn missing_forged_and_expired_tokens_are_denied_uncached() {
        let (auth, app, secret) = setup().await;
        let now = jsonwebtoken::get_current_timestamp();
        let expired = mint_user_token(&secret, app.as_str(), "u1", Role::Agent, now - 120).unwrap();
        let forged =
            mint_user_token("sk_guess", app.as_str(), "u1", Role::Agent, now + 60).unwrap();
        for token in [
            None,
            Some(""),
            Some("adm_kez"),
            Some(&expired),
            Some(&forged),
        ] {
            let answer = authorize(&auth, &request(token), DEFAULT_TTL_SECS, now)
                .await
                .unwrap();
            assert!(!answer.is_authorized, "{token:?}");
            assert_eq!(answer.ttl_override, Some(0));
            assert!(answer.resolver_context.is_empty());
        }
    }
}

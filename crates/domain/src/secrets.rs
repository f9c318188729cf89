//! Application secrets without storing secrets.
//!
//! User tokens are HS256 JWTs, so verifying one needs the signing key itself, not a hash of
//! it. Instead of keeping the secret encrypted in the database we *derive* it:
//!
//! `secret = "sk_" + base64url(HMAC-SHA256(server_key, "chat-app-secret\0" + token + "\0" + generation))`
//!
//! The database (and the DynamoDB stream, backups, search index) holds no secret material
//! at all, only the generation number; the server key lives in one place (a key file
//! locally, Secrets Manager/KMS on AWS). Rotating one application's secret bumps its
//! generation. ARCHITECTURE.md discusses the trade-offs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{DomainError, Result};
use crate::model::AppToken;

type HmacSha256 = Hmac<Sha256>;

/// The server's master key: 32 random bytes. Never logged (Debug is redacted).
#[derive(Clone)]
pub struct ServerKey([u8; 32]);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(<redacted>)")
    }
}

impl ServerKey {
    pub const ENCODED_LEN: usize = 43;

    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key[..]);
        ServerKey(key)
    }

    /// The base64url (no padding) form kept in key files and environment variables.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    pub fn decode(encoded: &str) -> Result<Self> {
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded.trim())
            .map_err(|_| DomainError::bad_input("server key is not base64url"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| DomainError::bad_input("server key must be 32 bytes"))?;
        Ok(ServerKey(key))
    }

    /// HMAC-SHA256 of `parts` separated by NUL under a purpose label, so the same key can
    /// serve several purposes without one output ever standing for another.
    pub(crate) fn mac(&self, purpose: &str, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key size");
        mac.update(purpose.as_bytes());
        for part in parts {
            mac.update(b"\0");
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    pub fn app_secret(&self, app: &AppToken, generation: u32) -> AppSecret {
        let digest = self.mac(
            "chat-app-secret",
            &[app.as_str().as_bytes(), generation.to_string().as_bytes()],
        );
        AppSecret(format!("sk_{}", URL_SAFE_NO_PAD.encode(digest)))
    }
}

/// An application's secret: the HS256 key its backend signs user tokens with.
#[derive(Clone, PartialEq, Eq)]
pub struct AppSecret(String);

impl std::fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppSecret(<redacted>)")
    }
}

impl AppSecret {
    /// Only for handing it to the caller of createApplication and to the JWT verifier.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A new application token: `app_` + 128 random bits in base64url.
pub fn generate_app_token() -> AppToken {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes[..]);
    AppToken::parse(&format!("app_{}", URL_SAFE_NO_PAD.encode(bytes)))
        .expect("generated tokens are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_stable_per_key_app_and_generation() {
        let key = ServerKey::generate();
        let app = AppToken::parse("app_one").unwrap();
        let other = AppToken::parse("app_two").unwrap();
        assert_eq!(key.app_secret(&app, 1), key.app_secret(&app, 1));
        assert_ne!(key.app_secret(&app, 1), key.app_secret(&app, 2));
        assert_ne!(key.app_secret(&app, 1), key.app_secret(&other, 1));
        assert_ne!(
            key.app_secret(&app, 1),
            ServerKey::generate().app_secret(&app, 1)
        );
    }

    #[test]
    fn server_key_round_trips_and_rejects_bad_input() {
        let key = ServerKey::generate();
        let decoded = ServerKey::decode(&key.encode()).unwrap();
        let app = AppToken::parse("app_x").unwrap();
        assert_eq!(decoded.app_secret(&app, 1), key.app_secret(&app, 1));
        assert_eq!(key.encode().len(), ServerKey::ENCODED_LEN);
        assert!(ServerKey::decode("short").is_err());
        assert!(ServerKey::decode("not base64 !!").is_err());
        assert_eq!(format!("{key:?}"), "ServerKey(<redacted>)");
    }

    #[test]
    fn generated_tokens_are_unique_and_valid() {
        let a = generate_app_token();
        let b = generate_app_token();
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("app_"));
        assert_eq!(a.as_str().len(), 26);
    }
}

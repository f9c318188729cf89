//! Opaque, tamper-evident page tokens.
//!
//! A token is `base64url(json position) "." base64url(mac)`, where the MAC covers the
//! position *and* the context it was issued for (operation, application, filters). A forged,
//! truncated or replayed-elsewhere token fails the MAC and is BadInput: never a 500, never
//! another tenant's page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::error::{DomainError, Result};
use crate::limits::PAGE_TOKEN_MAX_CHARS;
use crate::secrets::ServerKey;

const MAC_BYTES: usize = 16;

#[derive(Clone, Debug)]
pub struct PageTokenCodec {
    key: ServerKey,
}

impl PageTokenCodec {
    pub fn new(key: ServerKey) -> Self {
        PageTokenCodec { key }
    }

    fn mac(&self, context: &str, payload: &[u8]) -> [u8; MAC_BYTES] {
        let full = self
            .key
            .mac("chat-page-token", &[context.as_bytes(), payload]);
        full[..MAC_BYTES].try_into().expect("slice of 32 bytes")
    }

    pub fn encode<T: Serialize>(&self, context: &str, position: &T) -> String {
        let payload = serde_json::to_vec(position).expect("positions serialize");
        let mac = self.mac(context, &payload);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(mac)
        )
    }

    pub fn decode<T: DeserializeOwned>(&self, context: &str, token: &str) -> Result<T> {
        let invalid =
            || DomainError::bad_input("nextToken is invalid or was issued for another query");
        if token.len() > PAGE_TOKEN_MAX_CHARS {
            return Err(DomainError::bad_input(format!(
                "nextToken is invalid: longer than {PAGE_TOKEN_MAX_CHARS} characters"
            )));
        }
        let (payload, mac) = token.split_once('.').ok_or_else(invalid)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| invalid())?;
        let expected = self.mac(context, &payload);
        if mac.len() != MAC_BYTES || !bool::from(expected.ct_eq(&mac[..])) {
            return Err(invalid());
        }
        serde_json::from_slice(&payload).map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> PageTokenCodec {
        PageTokenCodec::new(ServerKey::generate())
    }

    #[test]
    fn round_trips_in_its_own_context() {
        let c = codec();
        let token = c.encode("chats/app_a", &(17i64, 3u32));
        assert_eq!(
            c.decode::<(i64, u32)>("chats/app_a", &token).unwrap(),
            (17, 3)
        );
    }

    #[test]
    fn rejects_other_context_forgery_and_garbage() {
        let c = codec();
        let token = c.encode("chats/app_a", &(17i64, 3u32));
        assert!(c.decode::<(i64, u32)>("chats/app_b", &token).is_err());
        assert!(codec().decode::<(i64, u32)>("chats/app_a", &token).is_err());
        let forged_payload = URL_SAFE_NO_PAD.encode(b"[1,1]");
        let (_, mac) = token.split_once('.').unwrap();
        assert!(
            c.decode::<(i64, u32)>("chats/app_a", &format!("{forged_payload}.{mac}"))
                .is_err()
        );
        for garbage in ["", ".", "abc", "a.b", "!!!.???", &"x".repeat(600)] {
            let err = c.decode::<(i64, u32)>("chats/app_a", garbage).unwrap_err();
            assert_eq!(err.code(), crate::ErrorCode::BadInput);
        }
    }
}

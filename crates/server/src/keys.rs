//! The server key and the admin key of a dev server.
//!
//! Both are kept in the data directory (mode 0600) so that a restart keeps every issued
//! application secret, user token and page token valid. `--memory` runs get fresh keys.

use std::fs;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use chat_domain::ServerKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} does not hold a valid key: {reason}")]
    Invalid { path: String, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `contents` to a new file readable by the owner only; fails if it exists.
fn write_private(path: &Path, contents: &str) -> Result<(), KeyError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(contents.as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

pub fn load_or_create_server_key(path: &Path) -> Result<ServerKey, KeyError> {
    if path.exists() {
        let text = fs::read_to_string(path).map_err(io(path))?;
        return ServerKey::decode(&text).map_err(|e| KeyError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        });
    }
    let key = ServerKey::generate();
    write_private(path, &key.encode())?;
    Ok(key)
}

/// A random admin key: `adm_` + 192 bits in base64url.
pub fn generate_admin_key() -> String {
    let mut bytes = [0u8; 24];
    rand::fill(&mut bytes[..]);
    format!(
        "adm_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub fn load_or_create_admin_key(path: &Path) -> Result<String, KeyError> {
    if path.exists() {
        let key = fs::read_to_string(path)
            .map_err(io(path))?
            .trim()
            .to_owned();
        if key.len() < 16 {
            return Err(KeyError::Invalid {
                path: path.display().to_string(),
                reason: "an admin key needs at least 16 characters".into(),
            });
        }
        return Ok(key);
    }
    let key = generate_admin_key();
    write_private(path, &key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_persist_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let server = dir.path().join("server.key");
        let admin = dir.path().join("admin.key");
        let first = load_or_create_server_key(&server).unwrap();
        let again = load_or_create_server_key(&server).unwrap();
        assert_eq!(first.encode(), again.encode());
        let a1 = load_or_create_admin_key(&admin).unwrap();
        assert_eq!(a1, load_or_create_admin_key(&admin).unwrap());
        assert!(a1.starts_with("adm_"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&server).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_corrupt_server_key_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let server = dir.path().join("server.key");
        fs::write(&server, "garbage").unwrap();
        assert!(matches!(
            load_or_create_server_key(&server),
            Err(KeyError::Invalid { .. })
        ));
    }
}

//! Client authentication: Vitess's static auth file and
//! mysql_native_password verification.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use sha1::{Digest, Sha1};

/// One allowed credential of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A clear-text password from the file's `Password`.
    Plain(String),
    /// The stored `MysqlNativePassword` hash: SHA1(SHA1(password)).
    NativeHash([u8; 20]),
}

/// Who may connect (`--mysql-auth-server-impl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `none`: any user, any password (local use).
    None,
    /// `static`: users from a Vitess static auth file.
    Static(HashMap<String, Vec<Credential>>),
    /// `clientcert`: a TLS client certificate (checked against
    /// `--mysql_server_ssl_ca`) whose common name is the user name; the
    /// password is not asked for, as vtgate's.
    ClientCert,
}

/// Errors loading the auth file.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read.
    #[error("auth file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not in Vitess's format.
    #[error("auth file {path}: {msg}")]
    Format { path: String, msg: String },
}

impl Auth {
    /// Loads Vitess's static auth file: `{"user": [{"Password": ..., "MysqlNativePassword": "*HEX", "UserData": ...}]}`
    /// or the legacy form with one object per user instead of a list.
    pub fn load_static(path: &Path) -> Result<Auth, AuthError> {
        let p = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| AuthError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse_static(&text).map_err(|msg| AuthError::Format { path: p, msg })
    }

    /// Parses the static auth JSON.
    pub fn parse_static(text: &[u8]) -> Result<Auth, String> {
        let doc: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(text).map_err(|e| e.to_string())?;
        let mut users = HashMap::new();
        for (user, v) in doc {
            let entries = match v {
                serde_json::Value::Array(a) => a,
                o @ serde_json::Value::Object(_) => vec![o],
                _ => return Err(format!("user {user}: expected a list of credentials")),
            };
            let mut creds = Vec::new();
            for e in entries {
                let obj = e
                    .as_object()
                    .ok_or_else(|| format!("user {user}: credential is not an object"))?;
                if let Some(hash) = obj.get("MysqlNativePassword").and_then(|v| v.as_str()) {
                    if !hash.is_empty() {
                        creds
                            .push(Credential::NativeHash(parse_native_hash(hash).ok_or_else(
                                || format!("user {user}: bad MysqlNativePassword"),
                            )?));
                        continue;
                    }
                }
                let pw = obj.get("Password").and_then(|v| v.as_str()).unwrap_or("");
                creds.push(Credential::Plain(pw.to_string()));
            }
            users.insert(user, creds);
        }
        Ok(Auth::Static(users))
    }

    /// Checks a mysql_native_password scramble response against the user's
    /// credentials; under `clientcert`, the user against `cert_name`, the
    /// common name of the client's certificate (None: it presented none).
    pub fn verify(
        &self,
        user: &str,
        salt: &[u8],
        response: &[u8],
        cert_name: Option<&str>,
    ) -> bool {
        match self {
            Auth::None => true,
            Auth::ClientCert => cert_name == Some(user),
            Auth::Static(users) => users
                .get(user)
                .is_some_and(|creds| creds.iter().any(|c| verify_native(c, salt, response))),
        }
    }
}

/// Who may connect, as the handshake reads it: the users now, swapped
/// whole when the static auth file changes (vtgate reads it again on
/// SIGHUP and every `--mysql_auth_static_reload_interval`), so passwords
/// can be rotated without a restart; connected clients stay connected.
#[derive(Debug)]
pub struct Users {
    current: ArcSwap<Auth>,
    file: Option<PathBuf>,
    /// Times a read of the file found new users.
    pub reloads: AtomicU64,
}

impl Users {
    /// The users `auth` names; `file` is where they were read from, to be
    /// read again (None: they never change).
    pub fn new(auth: Auth, file: Option<PathBuf>) -> Users {
        Users {
            current: ArcSwap::from_pointee(auth),
            file,
            reloads: AtomicU64::new(0),
        }
    }

    /// The users now.
    pub fn load(&self) -> arc_swap::Guard<std::sync::Arc<Auth>> {
        self.current.load()
    }

    /// Whether a file backs the users (and reloading can change them).
    pub fn from_file(&self) -> bool {
        self.file.is_some()
    }

    /// [`Users::reload`] on a signal or a timer, its outcome logged.
    pub fn reload_logged(&self) {
        match self.reload() {
            Ok(true) => tracing::info!("static auth file read again: users changed"),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "static auth file not read again; its last users stay")
            }
        }
    }

    /// Reads the file again; Ok(true) when the users changed. A file that
    /// does not load leaves the users as they were.
    pub fn reload(&self) -> Result<bool, AuthError> {
        let Some(file) = &self.file else {
            return Ok(false);
        };
        let fresh = Auth::load_static(file)?;
        if **self.current.load() == fresh {
            return Ok(false);
        }
        self.current.store(std::sync::Arc::new(fresh));
        self.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }
}

fn parse_native_hash(s: &str) -> Option<[u8; 20]> {
    let h = s.strip_prefix('*')?;
    if h.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(h.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn verify_native(cred: &Credential, salt: &[u8], response: &[u8]) -> bool {
    let hash2 = match cred {
        Credential::Plain(pw) if pw.is_empty() => return response.is_empty(),
        Credential::Plain(pw) => sha1(&[&sha1(&[pw.as_bytes()])]),
        Credential::NativeHash(h) => *h,
    };
    if response.len() != 20 {
        return false;
    }
    // response = SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw)))
    let mask = sha1(&[salt, &hash2]);
    let mut hash1 = [0u8; 20];
    for i in 0..20 {
        hash1[i] = response[i] ^ mask[i];
    }
    sha1(&[&hash1]) == hash2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_plain_and_hashed() {
        let auth = Auth::parse_static(
            br#"{"alice": [{"Password": "secret", "UserData": "a"}],
                "bob": {"MysqlNativePassword": "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"},
                "nopw": [{"Password": ""}]}"#,
        )
        .unwrap();
        let salt = b"abcdefghijklmnopqrst";
        let good = mysql_common::scramble::scramble_native(salt, b"secret").unwrap();
        assert!(auth.verify("alice", salt, &good, None));
        assert!(
            auth.verify("bob", salt, &good, None),
            "bob's hash is of 'secret'"
        );
        let bad = mysql_common::scramble::scramble_native(salt, b"wrong").unwrap();
        assert!(!auth.verify("alice", salt, &bad, None));
        assert!(!auth.verify("carol", salt, &good, None));
        assert!(auth.verify("nopw", salt, b"", None));
        assert!(!auth.verify("nopw", salt, &good, None));
        // clientcert: the certificate's name is the user; no password.
        let cert = Auth::ClientCert;
        assert!(cert.verify("dave", salt, &bad, Some("dave")));
        assert!(!cert.verify("dave", salt, &good, Some("eve")));
        assert!(!cert.verify("dave", salt, &good, None));
    }

    #[test]
    fn a_reload_swaps_users_only_when_the_file_changed() {
        let dir = std::env::temp_dir().join(format!("sg-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("auth.json");
        std::fs::write(&file, r#"{"alice": [{"Password": "a"}]}"#).unwrap();
        let users = Users::new(Auth::load_static(&file).unwrap(), Some(file.clone()));
        let salt = b"abcdefghijklmnopqrst";
        let scramble = |pw: &[u8]| mysql_common::scramble::scramble_native(salt, pw).unwrap();
        assert!(users.load().verify("alice", salt, &scramble(b"a"), None));
        assert!(!users.reload().unwrap());
        std::fs::write(&file, r#"{"alice": [{"Password": "b"}]}"#).unwrap();
        assert!(users.reload().unwrap());
        assert!(!users.load().verify("alice", salt, &scramble(b"a"), None));
        assert!(users.load().verify("alice", salt, &scramble(b"b"), None));
        std::fs::write(&file, "{not json").unwrap();
        assert!(users.reload().is_err());
        assert!(users.load().verify("alice", salt, &scramble(b"b"), None));
        assert_eq!(users.reloads.load(Ordering::Relaxed), 1);
        assert!(!Users::new(Auth::None, None).reload().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Bootstrap tokens, as Kubernetes keeps them: a Secret
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`
//! holding `token-id`, `token-secret`, an optional RFC 3339 `expiration`,
//! the `usage-bootstrap-*` flags and `auth-extra-groups`. A request bearing
//! `<id>.<secret>` authenticates as `system:bootstrap:<id>` in
//! `system:bootstrappers` (the API server's side, `server::auth`); the token
//! cleaner deletes the expired ones (`controllers::tokencleaner`).

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::jiff::Timestamp;
use rand::Rng;
use serde_json::{Value, json};

use crate::authz::User;

pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const NAMESPACE: &str = "kube-system";
pub const SECRET_NAME_PREFIX: &str = "bootstrap-token-";
pub const USER_PREFIX: &str = "system:bootstrap:";
/// The group every bootstrap token's user is in.
pub const GROUP: &str = "system:bootstrappers";

const ID_LENGTH: usize = 6;
const SECRET_LENGTH: usize = 16;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A token `<id>.<secret>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub secret: String,
}

impl Token {
    /// `[a-z0-9]{6}.[a-z0-9]{16}`, else `None` (not a bootstrap token).
    pub fn parse(text: &str) -> Option<Token> {
        let (id, secret) = text.split_once('.')?;
        let valid = |part: &str, length| {
            part.len() == length
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        (valid(id, ID_LENGTH) && valid(secret, SECRET_LENGTH)).then(|| Token {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// A fresh random token.
    pub fn generate() -> Token {
        let mut rng = rand::rng();
        let mut random = |length| {
            (0..length)
                .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                .collect::<String>()
        };
        Token {
            id: random(ID_LENGTH),
            secret: random(SECRET_LENGTH),
        }
    }

    pub fn text(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// The name of the Secret that holds the token.
    pub fn secret_name(&self) -> String {
        format!("{SECRET_NAME_PREFIX}{}", self.id)
    }

    /// The Secret that makes this token authenticate, with no expiration
    /// (kubeadm's `--ttl 0`) and no extra groups.
    pub fn secret(&self, description: &str) -> Value {
        let b64 = |text: &str| json!(STANDARD.encode(text));
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": self.secret_name(), "namespace": NAMESPACE },
            "type": SECRET_TYPE,
            "data": {
                "description": b64(description),
                "token-id": b64(&self.id),
                "token-secret": b64(&self.secret),
                "usage-bootstrap-authentication": b64("true"),
                "usage-bootstrap-signing": b64("true"),
            },
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a bootstrap token (<6 of [a-z0-9]>.<16 of [a-z0-9]>)")]
    Invalid { path: PathBuf },
}

/// The token in `path`, or a fresh one written there (readable by its
/// owner only).
pub fn load_or_create(path: &Path) -> Result<Token, TokenFileError> {
    let io = |source| TokenFileError::Io {
        path: path.into(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            Token::parse(text.trim()).ok_or_else(|| TokenFileError::Invalid { path: path.into() })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let token = Token::generate();
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .and_then(|mut file| writeln!(file, "{}", token.text()))
                .map_err(io)?;
            Ok(token)
        }
        Err(error) => Err(io(error)),
    }
}

/// Why a Secret does not authenticate a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the Secret is being deleted")]
    Deleting,
    #[error("the Secret is not of type {SECRET_TYPE}")]
    WrongType,
    #[error("the token's secret does not match")]
    WrongSecret,
    #[error("the Secret's token-id does not match")]
    WrongId,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not for authentication")]
    NotForAuthentication,
    #[error("auth-extra-groups: {0:?} is not a system:bootstrappers: group")]
    BadGroup(String),
}

/// The value of `key` in the Secret: `data` (base64), else `stringData`.
fn field(secret: &Value, key: &str) -> Option<String> {
    match secret["data"][key].as_str() {
        Some(encoded) => STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok()),
        None => secret["stringData"][key].as_str().map(str::to_owned),
    }
}

/// Whether the Secret's `expiration` is at or before `now`. An expiration
/// that does not parse counts as expired, as in Kubernetes.
pub fn expired(secret: &Value, now: Timestamp) -> bool {
    expiration(secret).is_some_and(|at| at.is_none_or(|at| at <= now))
}

/// The Secret's expiration: `None` without one, `Some(None)` when it does
/// not parse.
pub fn expiration(secret: &Value) -> Option<Option<Timestamp>> {
    let text = field(secret, "expiration").filter(|text| !text.is_empty())?;
    Some(text.parse().ok())
}

/// The user `token` authenticates as by `secret` (the Secret named for its
/// id), checked as Kubernetes' bootstrap token authenticator does.
pub fn user(secret: &Value, token: &Token, now: Timestamp) -> Result<User, Refused> {
    if !secret["metadata"]["deletionTimestamp"].is_null() {
        return Err(Refused::Deleting);
    }
    if secret["type"] != SECRET_TYPE {
        return Err(Refused::WrongType);
    }
    let stored_secret = field(secret, "token-secret").unwrap_or_default();
    if !constant_time_eq(stored_secret.as_bytes(), token.secret.as_bytes()) {
        return Err(Refused::WrongSecret);
    }
    if field(secret, "token-id").as_deref() != Some(token.id.as_str()) {
        return Err(Refused::WrongId);
    }
    if expired(secret, now) {
        return Err(Refused::Expired);
    }
    if field(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err(Refused::NotForAuthentication);
    }
    Ok(User {
        name: format!("{USER_PREFIX}{}", token.id),
        uid: String::new(),
        groups: groups(secret)?,
        extra: Default::default(),
    })
}

/// `system:bootstrappers` and the `auth-extra-groups`, sorted: each extra
/// group must be a `system:bootstrappers:` group.
fn groups(secret: &Value) -> Result<Vec<String>, Refused> {
    let mut groups = BTreeSet::from([GROUP.to_owned()]);
    for group in field(secret, "auth-extra-groups")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|group| !group.is_empty())
    {
        if !extra_group_valid(group) {
            return Err(Refused::BadGroup(group.to_owned()));
        }
        groups.insert(group.to_owned());
    }
    Ok(groups.into_iter().collect())
}

/// `system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]`.
fn extra_group_valid(group: &str) -> bool {
    let Some(rest) = group.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    rest.len() <= 256
        && rest.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
}

/// Compares without stopping at the first difference, so the time taken
/// tells nothing about the stored secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn token() -> Token {
        Token::parse("abcdef.0123456789abcdef").unwrap()
    }

    #[test]
    fn only_the_bootstrap_token_shape_parses() {
        assert_eq!(token().id, "abcdef");
        assert_eq!(token().text(), "abcdef.0123456789abcdef");
        for text in [
            "abcdef",
            "abcde.0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "abcdef.0123456789abcde",
            "abcdef:0123456789abcdef",
        ] {
            assert_eq!(Token::parse(text), None, "{text}");
        }
        let fresh = Token::generate();
        assert_eq!(Token::parse(&fresh.text()), Some(fresh));
    }

    #[test]
    fn the_token_file_is_made_once_and_private() {
        let path =
            std::env::temp_dir().join(format!("skiff-bootstrap-token-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let made = load_or_create(&path).unwrap();
        assert_eq!(load_or_create(&path).unwrap(), made);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o077, 0);
        std::fs::write(&path, "nonsense\n").unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(TokenFileError::Invalid { .. })
        ));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_valid_token_is_a_bootstrapper_with_its_extra_groups() {
        let mut secret = token().secret("test");
        let user = super::user(&secret, &token(), now()).unwrap();
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(user.groups, vec![GROUP.to_owned()]);

        secret["stringData"] =
            json!({ "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token" });
        let user = super::user(&secret, &token(), now()).unwrap();
        assert_eq!(
            user.groups,
            vec![
                "system:bootstrappers".to_owned(),
                "system:bootstrappers:kubeadm:default-node-token".to_owned()
            ]
        );
        secret["stringData"] = json!({ "auth-extra-groups": "system:masters" });
        assert_eq!(
            super::user(&secret, &token(), now()),
            Err(Refused::BadGroup("system:masters".into()))
        );
    }

    #[test]
    fn expired_wrong_or_unusable_tokens_are_refused() {
        let secret = token().secret("test");
        let with = |key: &str, value: &str| {
            let mut changed = secret.clone();
            changed["data"][key] = json!(STANDARD.encode(value));
            changed
        };
        let refused = |secret: &Value| super::user(secret, &token(), now()).unwrap_err();
        assert_eq!(
            refused(&with("expiration", "2025-12-31T23:59:59Z")),
            Refused::Expired
        );
        assert_eq!(refused(&with("expiration", "tomorrow")), Refused::Expired);
        assert!(super::user(&with("expiration", "2026-01-01T00:00:01Z"), &token(), now()).is_ok());
        assert_eq!(
            refused(&with("token-secret", "ffffffffffffffff")),
            Refused::WrongSecret
        );
        assert_eq!(refused(&with("token-id", "zzzzzz")), Refused::WrongId);
        assert_eq!(
            refused(&with("usage-bootstrap-authentication", "false")),
            Refused::NotForAuthentication
        );
        let mut opaque = secret.clone();
        opaque["type"] = json!("Opaque");
        assert_eq!(refused(&opaque), Refused::WrongType);
        let mut deleting = secret.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        assert_eq!(refused(&deleting), Refused::Deleting);
    }
}

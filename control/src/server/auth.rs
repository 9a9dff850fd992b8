//! Who is asking: the subject of a verified client certificate, the user
//! of a bearer token from the tokens file (kube-apiserver's
//! `--token-auth-file` format), a bootstrap token's, or the service
//! account of a bearer token the service-account key signed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use tracing::debug;
use x509_parser::prelude::{FromDer, X509Certificate};

use k8s_openapi::jiff::Timestamp;
use skiff_etcd::keys;

pub use crate::authz::User;
use crate::bootstrap_token;
use crate::serviceaccount::{Authenticator, ISSUER};
use crate::store::{Store, object_key};

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: &'static str,
    },
}

/// Bearer tokens and their users.
#[derive(Debug, Default, Clone)]
pub struct Tokens(HashMap<String, User>);

impl Tokens {
    /// Reads a CSV file of `token,user,uid[,"group1,group2"]` lines.
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.into(),
            source,
        })?;
        let mut tokens = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let error = |reason| TokenFileError::Line {
                path: path.into(),
                line: index + 1,
                reason,
            };
            let fields = csv_fields(line).ok_or_else(|| error("unbalanced quotes"))?;
            let [token, name, uid, rest @ ..] = fields.as_slice() else {
                return Err(error("needs at least token,user,uid"));
            };
            if token.is_empty() || name.is_empty() {
                return Err(error("empty token or user"));
            }
            let groups = rest
                .first()
                .map(|groups| {
                    groups
                        .split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            tokens.insert(
                token.clone(),
                User {
                    name: name.clone(),
                    uid: uid.clone(),
                    groups,
                    extra: BTreeMap::new(),
                },
            );
        }
        Ok(Self(tokens))
    }

    pub fn user(&self, token: &str) -> Option<&User> {
        self.0.get(token)
    }
}

/// The fields of one CSV line (RFC 4180 quoting); `None` on an open quote.
fn csv_fields(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return None;
    }
    fields.push(field);
    Some(fields.into_iter().map(|f| f.trim().to_owned()).collect())
}

/// The user a (CA-verified) client certificate names: CN is the user name,
/// each O a group, as in Kubernetes.
pub fn certificate_user(der: &[u8]) -> Option<User> {
    let (_, certificate) = X509Certificate::from_der(der).ok()?;
    let subject = certificate.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some(User {
        name,
        uid: String::new(),
        groups,
        extra: BTreeMap::new(),
    })
}

/// The user of the certificate, else of the bearer token in the tokens
/// file; in `system:authenticated` either way, as kube-apiserver adds it.
fn known_user(
    certificate: Option<&User>,
    authorization: Option<&str>,
    tokens: &Tokens,
) -> Option<User> {
    if let Some(user) = certificate {
        return Some(user.clone().authenticated());
    }
    tokens
        .user(bearer(authorization)?)
        .cloned()
        .map(User::authenticated)
}

/// The token of an `Authorization: Bearer <token>` header. As
/// kube-apiserver reads it, the scheme is case-insensitive (the Python
/// client's in-cluster config sends `bearer`) and the token is the word
/// after it.
fn bearer(authorization: Option<&str>) -> Option<&str> {
    let mut parts = authorization?.trim().split(' ');
    let scheme = parts.next()?;
    let token = parts.next().filter(|token| !token.is_empty())?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// The request's user: its certificate's, else its bearer token's (from
/// the tokens file, else a bootstrap token's, else a service-account
/// token for this API server's audience). `None` answers 401.
pub async fn authenticate(
    certificate: Option<&User>,
    authorization: Option<&str>,
    tokens: &Tokens,
    service_accounts: &Authenticator,
    store: &Store,
) -> Option<User> {
    if let Some(user) = known_user(certificate, authorization, tokens) {
        return Some(user);
    }
    let token = bearer(authorization)?;
    if let Some(bootstrap) = bootstrap_token::Token::parse(token) {
        return bootstrap_user(&bootstrap, store).await;
    }
    match service_accounts.authenticate(token, &[ISSUER]).await {
        Ok((identity, _)) => Some(
            User {
                name: identity.name,
                uid: identity.uid,
                groups: identity.groups,
                extra: identity.extra,
            }
            .authenticated(),
        ),
        Err(error) => {
            debug!(%error, "bearer token refused");
            None
        }
    }
}

/// A bootstrap token's user, its Secret read from etcd.
async fn bootstrap_user(token: &bootstrap_token::Token, store: &Store) -> Option<User> {
    let key = object_key(
        keys::SECRETS,
        Some(bootstrap_token::NAMESPACE),
        &token.secret_name(),
    );
    let secret = match store.get(&key).await {
        Ok(secret) => secret,
        Err(error) => {
            debug!(id = token.id, %error, "bootstrap token: no Secret");
            return None;
        }
    };
    bootstrap_token::user(&secret, token, Timestamp::now())
        .inspect_err(|refused| debug!(id = token.id, %refused, "bootstrap token refused"))
        .ok()
        .map(User::authenticated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_parses_like_kube_apiserver() {
        let path = std::env::temp_dir().join(format!("skiff-tokens-{}.csv", std::process::id()));
        std::fs::write(&path, "t1,alice,1,\"dev,ops\"\n\nt2,bob,2\n").unwrap();
        let tokens = Tokens::load(&path).unwrap();
        assert_eq!(
            tokens.user("t1"),
            Some(&User {
                name: "alice".into(),
                uid: "1".into(),
                groups: vec!["dev".into(), "ops".into()],
                extra: BTreeMap::new(),
            })
        );
        assert_eq!(tokens.user("t2").unwrap().groups, Vec::<String>::new());
        let bob = known_user(None, Some("Bearer t2"), &tokens).unwrap();
        assert_eq!(
            (bob.name.as_str(), bob.groups.as_slice()),
            ("bob", &["system:authenticated".to_owned()][..])
        );
        assert_eq!(known_user(None, Some("Bearer nope"), &tokens), None);
        assert_eq!(known_user(None, Some("Basic t2"), &tokens), None);
        let lower = known_user(None, Some("bearer t2"), &tokens).unwrap();
        assert_eq!(lower.name, "bob", "the scheme is case-insensitive");
        assert_eq!(known_user(None, Some("Bearer  t2"), &tokens), None);
        assert_eq!(known_user(None, None, &tokens), None);

        std::fs::write(&path, "t1,alice\n").unwrap();
        assert!(Tokens::load(&path).is_err());
        std::fs::write(&path, "t1,alice,1,\"dev\n").unwrap();
        assert!(Tokens::load(&path).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}

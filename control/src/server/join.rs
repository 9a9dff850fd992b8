//! Joining a control plane with a token, as `k3s server --token` does. The
//! token is `K10<sha256 of the CA bundle, hex>::server:<secret>`: a joining
//! member fetches `/cacerts` without trusting the server, checks the CA
//! against the hash, then fetches the CA keys from
//! `/v1-skiff/server-bootstrap` over TLS verified by that CA, with the
//! secret as the password of user `server` (HTTP Basic). Every member
//! keeps the token in `<data-dir>/token` and serves both paths.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rand::RngCore;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::info;

use super::body::Body;
use super::pki::{PkiError, read, write};
use super::tls::{self, TlsError};

/// The path of the public CA bundle.
pub const CACERTS_PATH: &str = "/cacerts";
/// The path of the CA keys, for members holding the token.
pub const BOOTSTRAP_PATH: &str = "/v1-skiff/server-bootstrap";
/// What k3s calls its token format: `K10` then the CA hash.
const TOKEN_PREFIX: &str = "K10";
const TOKEN_USER: &str = "server";
/// The files every member shares, relative to the PKI directory: the
/// cluster CA and the etcd CA, with their keys, and the service-account
/// signing key pair (a token any member issued verifies on every other).
const SHARED_FILES: &[&str] = &[
    "ca.crt",
    "ca.key",
    "sa.key",
    "sa.pub",
    "etcd/ca.crt",
    "etcd/ca.key",
];

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the join token is not K10<ca-hash>::server:<secret>")]
    MalformedToken,
    #[error(
        "the CA served by {url} does not match the token's hash (expected {expected}, got {actual})"
    )]
    CaMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    ca_hash: String,
    secret: String,
}

impl JoinToken {
    pub fn parse(text: &str) -> Result<JoinToken, JoinError> {
        let text = text.trim();
        let (hash, rest) = text
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once("::"))
            .ok_or(JoinError::MalformedToken)?;
        let secret = rest
            .strip_prefix(TOKEN_USER)
            .and_then(|rest| rest.strip_prefix(':'))
            .filter(|secret| !secret.is_empty())
            .ok_or(JoinError::MalformedToken)?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(JoinError::MalformedToken);
        }
        Ok(JoinToken {
            ca_hash: hash.to_ascii_lowercase(),
            secret: secret.to_owned(),
        })
    }

    /// A fresh token for the CA bundle `ca_pem`.
    fn generate(ca_pem: &str) -> JoinToken {
        let mut secret = [0u8; 16];
        rand::rng().fill_bytes(&mut secret);
        JoinToken {
            ca_hash: sha256_hex(ca_pem.as_bytes()),
            secret: hex(&secret),
        }
    }

    pub fn text(&self) -> String {
        format!(
            "{TOKEN_PREFIX}{}::{TOKEN_USER}:{}",
            self.ca_hash, self.secret
        )
    }

    /// Whether an `Authorization` header carries this token's secret. The
    /// hashes are compared, so the time taken says nothing of the secret.
    fn authorizes(&self, authorization: Option<&str>) -> bool {
        let expected = format!("{TOKEN_USER}:{}", self.secret);
        let given = authorization
            .and_then(|value| value.strip_prefix("Basic "))
            .and_then(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
            })
            .unwrap_or_default();
        Sha256::digest(expected.as_bytes()) == Sha256::digest(&given)
    }
}

/// `<data-dir>/token`.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("token")
}

/// This member's token: the stored one, else (the first member) a new one
/// for `ca_pem`, stored.
pub fn local_token(data_dir: &Path, ca_pem: &str) -> Result<JoinToken, JoinError> {
    let path = token_path(data_dir);
    if path.exists() {
        return JoinToken::parse(&read(&path)?);
    }
    let token = JoinToken::generate(ca_pem);
    write(&path, &format!("{}\n", token.text()))?;
    info!(path = %path.display(), "created the join token");
    Ok(token)
}

/// Fetches the shared CAs from the member at `url` into `pki_dir` and
/// stores the token in `data_dir`. A member that joined before (its CA is
/// there) fetches nothing.
pub async fn join(
    url: &str,
    token: &JoinToken,
    data_dir: &Path,
    pki_dir: &Path,
) -> Result<(), JoinError> {
    if pki_dir.join("ca.crt").exists() {
        return Ok(());
    }
    let url = url.trim_end_matches('/');
    let cacerts_url = format!("{url}{CACERTS_PATH}");
    let ca_pem = get(&cacerts_url, tls::unverified_client_config()?, None).await?;
    let ca_pem = String::from_utf8_lossy(&ca_pem).into_owned();
    let actual = sha256_hex(ca_pem.as_bytes());
    if actual != token.ca_hash {
        return Err(JoinError::CaMismatch {
            url: cacerts_url,
            expected: token.ca_hash.clone(),
            actual,
        });
    }
    let bootstrap_url = format!("{url}{BOOTSTRAP_PATH}");
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{TOKEN_USER}:{}", token.secret));
    let body = get(
        &bootstrap_url,
        tls::ca_client_config(&ca_pem)?,
        Some(&format!("Basic {basic}")),
    )
    .await?;
    let files: Map<String, Value> =
        serde_json::from_slice(&body).map_err(|error| JoinError::Fetch {
            url: bootstrap_url.clone(),
            reason: format!("not a JSON object of files: {error}"),
        })?;
    for name in SHARED_FILES {
        let Some(contents) = files.get(*name).and_then(Value::as_str) else {
            continue;
        };
        let path = pki_dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| PkiError::Io {
                path: parent.into(),
                source,
            })?;
        }
        write(&path, contents)?;
    }
    write(&token_path(data_dir), &format!("{}\n", token.text()))?;
    info!(url, "joined: fetched the cluster's CAs");
    Ok(())
}

/// What a member answers on the join paths, `None` for any other path.
pub fn serve(
    path: &str,
    authorization: Option<&str>,
    token: &JoinToken,
    pki_dir: &Path,
) -> Option<Response<Body>> {
    match path {
        CACERTS_PATH => Some(match read(&pki_dir.join("ca.crt")) {
            Ok(pem) => response(StatusCode::OK, "application/x-pem-file", pem.into_bytes()),
            Err(error) => server_error(&error),
        }),
        BOOTSTRAP_PATH if !token.authorizes(authorization) => Some(response(
            StatusCode::UNAUTHORIZED,
            "text/plain",
            b"Unauthorized".to_vec(),
        )),
        BOOTSTRAP_PATH => {
            let mut files = Map::new();
            for name in SHARED_FILES {
                let path = pki_dir.join(name);
                if !path.exists() {
                    continue;
                }
                match read(&path) {
                    Ok(contents) => files.insert((*name).to_owned(), Value::String(contents)),
                    Err(error) => return Some(server_error(&error)),
                };
            }
            let body = serde_json::to_vec(&files).expect("JSON values always serialize");
            Some(response(StatusCode::OK, "application/json", body))
        }
        _ => None,
    }
}

fn response(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::Full(Some(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_str(content_type).expect("a valid content type"),
    );
    response
}

fn server_error(error: &PkiError) -> Response<Body> {
    tracing::error!(%error, "serving the join paths");
    response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "text/plain",
        error.to_string().into_bytes(),
    )
}

/// One HTTPS GET over HTTP/1.1, the whole body on a 2xx.
async fn get(
    url: &str,
    config: rustls::ClientConfig,
    authorization: Option<&str>,
) -> Result<Vec<u8>, JoinError> {
    let fail = |reason: String| JoinError::Fetch {
        url: url.to_owned(),
        reason,
    };
    let uri: http::Uri = url.parse().map_err(|error| fail(format!("{error}")))?;
    let host = uri
        .host()
        .ok_or_else(|| fail("no host".into()))?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let server_name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|error| fail(format!("{error}")))?;
    let connect = async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|error| fail(format!("connect: {error}")))?;
        TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|error| fail(format!("TLS: {error}")))
    };
    let stream = tokio::time::timeout(std::time::Duration::from_secs(10), connect)
        .await
        .map_err(|_| fail("no connection within 10 s".into()))??;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| fail(format!("{error}")))?;
    tokio::spawn(connection);
    let mut request = Request::get(uri.path()).header(header::HOST, format!("{host}:{port}"));
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|error| fail(format!("{error}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| fail(format!("{error}")))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| fail(format!("{error}")))?
        .to_bytes();
    if !status.is_success() {
        return Err(fail(format!("{status}")));
    }
    Ok(body.to_vec())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_check_the_secret() {
        let token = JoinToken::generate("-----BEGIN CERTIFICATE-----\n");
        let text = token.text();
        assert!(
            text.starts_with("K10") && text.contains("::server:"),
            "{text}"
        );
        assert_eq!(JoinToken::parse(&text).unwrap(), token);
        let basic = |password: &str| {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("server:{password}"));
            format!("Basic {encoded}")
        };
        assert!(token.authorizes(Some(&basic(&token.secret))));
        assert!(!token.authorizes(Some(&basic("wrong"))));
        assert!(!token.authorizes(None));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for text in [
            "",
            "K10abc::server:secret",
            &format!("K10{}::node:secret", "a".repeat(64)),
            &format!("K10{}::server:", "a".repeat(64)),
            &format!("K11{}::server:secret", "a".repeat(64)),
        ] {
            assert!(JoinToken::parse(text).is_err(), "{text:?} accepted");
        }
    }
}

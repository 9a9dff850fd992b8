//! What clients can make the server hold: request bodies (kube-apiserver's
//! 3 MiB), open connections per listener, how long a connection may take to
//! finish its TLS handshake and send its request headers (so that idle or
//! slow connections cannot pin file descriptors and tasks forever), and how
//! many requests are served at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api::{ApiError, parse_bool};

/// Largest request body accepted, as kube-apiserver's
/// `maxRequestBodyBytes`, the bound of a patched document too (etcd's own
/// request limit, 1.5 MiB by default, refuses smaller objects: the store
/// maps that to 413 as well).
const MAX_BODY_BYTES: usize = crate::patch::MAX_DOCUMENT_BYTES;

/// The connection limits of every listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A connection that has not finished its TLS handshake by then is
    /// closed (Go's `http.Transport` uses 10 s on the other side).
    pub tls_handshake_timeout: Duration,
    /// A connection that has not sent a whole request head by then is
    /// closed: kube-apiserver sets Go's `ReadHeaderTimeout` to 32 s.
    pub header_read_timeout: Duration,
    /// Connections each listener serves at once; further ones wait in the
    /// kernel's accept queue until one closes.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(32),
            max_connections: 4096,
        }
    }
}

/// The request body, at most [`MAX_BODY_BYTES`]: a larger one is
/// kube-apiserver's 413 `RequestEntityTooLarge`.
pub async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => {
            Err(ApiError::too_large(format!("limit is {MAX_BODY_BYTES}")))
        }
        Err(error) => Err(ApiError::bad_request(format!(
            "reading the request body: {error}"
        ))),
    }
}

/// kube-apiserver's in-flight limits; 0 is no limit, as there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// `--max-requests-inflight`: reads being served at once.
    pub max_requests_inflight: usize,
    /// `--max-mutating-requests-inflight`: writes being served at once.
    pub max_mutating_requests_inflight: usize,
    /// Long-running requests (watches, logs, exec, attach, port-forward)
    /// one user holds open at once. They do not count toward the two
    /// limits above, as in kube-apiserver, which would otherwise fill up
    /// with watches; this bounds them instead.
    pub max_long_running_per_user: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
            max_long_running_per_user: 1000,
        }
    }
}

/// What kind of request is being admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Read,
    Mutating,
    LongRunning,
}

impl RequestKind {
    /// kube-apiserver's classification: watches and the streaming pod
    /// subresources are long-running, any other GET/HEAD/OPTIONS reads.
    pub fn of(method: &Method, path: &str, query: Option<&str>) -> Self {
        const STREAMING: [&str; 5] = ["log", "exec", "attach", "portforward", "proxy"];
        let watch = path.starts_with("/api/v1/watch/")
            || path.contains("/watch/")
            || query.is_some_and(|query| {
                query
                    .split('&')
                    .filter_map(|pair| pair.strip_prefix("watch="))
                    .any(|value| parse_bool(value) == Some(true))
            });
        let streaming = path.contains("/pods/")
            && path
                .rsplit('/')
                .next()
                .is_some_and(|last| STREAMING.contains(&last));
        if watch || streaming {
            Self::LongRunning
        } else if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            Self::Read
        } else {
            Self::Mutating
        }
    }
}

/// The counters the limits apply to, shared by every listener.
pub struct InFlight {
    limits: RequestLimits,
    reads: Arc<Semaphore>,
    mutating: Arc<Semaphore>,
    long_running: Arc<Mutex<HashMap<String, usize>>>,
}

/// A request's place among those in flight, given back when dropped.
pub enum Admission {
    Unlimited,
    Counted { _permit: OwnedSemaphorePermit },
    LongRunning { _slot: LongRunningSlot },
}

/// One of a user's long-running requests; it must live as long as the
/// request's stream or upgraded connection.
pub struct LongRunningSlot {
    user: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for LongRunningSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("the lock is never poisoned");
        if let Some(count) = counts.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

impl InFlight {
    pub fn new(limits: RequestLimits) -> Self {
        Self {
            limits,
            reads: Arc::new(Semaphore::new(limits.max_requests_inflight)),
            mutating: Arc::new(Semaphore::new(limits.max_mutating_requests_inflight)),
            long_running: Arc::default(),
        }
    }

    /// Admits a request of `kind` from `user`, or kube-apiserver's 429.
    pub fn admit(&self, kind: RequestKind, user: &str) -> Result<Admission, ApiError> {
        let (semaphore, limit) = match kind {
            RequestKind::Read => (&self.reads, self.limits.max_requests_inflight),
            RequestKind::Mutating => (&self.mutating, self.limits.max_mutating_requests_inflight),
            RequestKind::LongRunning => return self.admit_long_running(user),
        };
        if limit == 0 {
            return Ok(Admission::Unlimited);
        }
        semaphore
            .clone()
            .try_acquire_owned()
            .map(|permit| Admission::Counted { _permit: permit })
            .map_err(|_| ApiError::too_many_requests())
    }

    fn admit_long_running(&self, user: &str) -> Result<Admission, ApiError> {
        let limit = self.limits.max_long_running_per_user;
        if limit == 0 {
            return Ok(Admission::Unlimited);
        }
        let mut counts = self
            .long_running
            .lock()
            .expect("the lock is never poisoned");
        let count = counts.entry(user.to_owned()).or_default();
        if *count >= limit {
            return Err(ApiError::too_many_requests());
        }
        *count += 1;
        Ok(Admission::LongRunning {
            _slot: LongRunningSlot {
                user: user.to_owned(),
                counts: self.long_running.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_requests_as_kube_apiserver_does() {
        let kind =
            |method: Method, path: &str, query: Option<&str>| RequestKind::of(&method, path, query);
        assert_eq!(kind(Method::GET, "/api/v1/pods", None), RequestKind::Read);
        assert_eq!(
            kind(Method::GET, "/api/v1/pods", Some("watch=true")),
            RequestKind::LongRunning
        );
        assert_eq!(
            kind(Method::GET, "/api/v1/pods", Some("watch=false")),
            RequestKind::Read
        );
        assert_eq!(
            kind(Method::GET, "/api/v1/watch/namespaces/a/pods", None),
            RequestKind::LongRunning
        );
        assert_eq!(
            kind(Method::POST, "/api/v1/namespaces/a/pods/p/exec", None),
            RequestKind::LongRunning
        );
        assert_eq!(
            kind(Method::GET, "/api/v1/namespaces/a/pods/p/log", None),
            RequestKind::LongRunning
        );
        assert_eq!(
            kind(Method::DELETE, "/api/v1/namespaces/a/configmaps/log", None),
            RequestKind::Mutating
        );
    }

    #[test]
    fn long_running_requests_are_limited_per_user() {
        let in_flight = InFlight::new(RequestLimits {
            max_long_running_per_user: 2,
            ..RequestLimits::default()
        });
        let first = in_flight.admit(RequestKind::LongRunning, "ann").unwrap();
        let _second = in_flight.admit(RequestKind::LongRunning, "ann").unwrap();
        let refused = in_flight
            .admit(RequestKind::LongRunning, "ann")
            .err()
            .unwrap();
        assert_eq!(refused.code, 429);
        in_flight.admit(RequestKind::LongRunning, "bob").unwrap();
        drop(first);
        in_flight.admit(RequestKind::LongRunning, "ann").unwrap();
    }
}

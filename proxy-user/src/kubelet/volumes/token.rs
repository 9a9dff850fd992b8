//! ServiceAccount tokens for projected volumes, as the kubelet's token
//! manager gets them: a TokenRequest for the pod's ServiceAccount, bound
//! to the pod, with the source's audience and lifetime. Each token is kept
//! and written again until 80% of its lifetime or 24 hours have passed,
//! then requested anew.
use std::{collections::HashMap, future::Future, time::Duration};

use k8s_openapi::{
    api::{
        authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec},
        core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection},
    },
    jiff::{SignedDuration, Timestamp},
};
use kube::api::{Api, PostParams};
use tokio::sync::Mutex;

/// A token's lifetime when the source sets none (kube's default for
/// `expirationSeconds`).
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// A token older than this is refreshed whatever its lifetime.
const MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a projection has no token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("requesting a token for serviceaccount {namespace}/{name}: {source}")]
    Request {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the API server answered serviceaccount {namespace}/{name}'s TokenRequest without a token"
    )]
    Unanswered { namespace: String, name: String },
}

/// Where tokens come from: the API server (the agent's own client), or a
/// fake in tests.
pub trait TokenIssuer: Sync {
    /// Creates `request` for ServiceAccount `namespace/name`.
    fn issue(
        &self,
        namespace: &str,
        name: &str,
        request: &TokenRequest,
    ) -> impl Future<Output = Result<TokenRequest, TokenError>> + Send;
}

impl TokenIssuer for kube::Client {
    async fn issue(
        &self,
        namespace: &str,
        name: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, TokenError> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.clone(), namespace);
        (accounts
            .create_token_request(name, &PostParams::default(), request)
            .await)
            .map_err(|source| TokenError::Request {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source,
            })
    }
}

/// What one projection asks for; tokens are kept per request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    service_account: String,
    audience: String,
    expiration_seconds: i64,
}

/// A token and when to request the next.
#[derive(Debug, Clone)]
struct Held {
    token: String,
    refresh_at: Timestamp,
}

/// One pod's tokens.
#[derive(Debug, Default)]
pub struct PodTokens {
    held: Mutex<HashMap<Key, Held>>,
}

impl PodTokens {
    /// The token `source` projects for `pod` at `now`: the one held while
    /// it is fresh, else a new one from `issuer`.
    pub async fn token(
        &self,
        issuer: &impl TokenIssuer,
        pod: &Pod,
        source: &ServiceAccountTokenProjection,
        now: Timestamp,
    ) -> Result<String, TokenError> {
        let spec = pod.spec.as_ref();
        let key = Key {
            service_account: (spec.and_then(|s| s.service_account_name.clone()))
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "default".to_owned()),
            audience: source.audience.clone().unwrap_or_default(),
            expiration_seconds: (source.expiration_seconds).unwrap_or(DEFAULT_EXPIRATION_SECONDS),
        };
        let mut held = self.held.lock().await;
        if let Some(token) = held.get(&key).filter(|t| now < t.refresh_at) {
            return Ok(token.token.clone());
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let request = request_for(pod, &key);
        let answer = issuer
            .issue(namespace, &key.service_account, &request)
            .await?;
        let unanswered = || TokenError::Unanswered {
            namespace: namespace.to_owned(),
            name: key.service_account.clone(),
        };
        let status = answer.status.ok_or_else(unanswered)?;
        let (Some(token), Some(expires)) = (status.token, status.expiration_timestamp) else {
            return Err(unanswered());
        };
        if token.is_empty() {
            return Err(unanswered());
        }
        // The server may grant another lifetime than asked: the answer's.
        let lifetime = (answer.spec.and_then(|spec| spec.expiration_seconds))
            .unwrap_or(key.expiration_seconds);
        let refresh_at = refresh_at(expires.0, lifetime);
        let kept = Held {
            token: token.clone(),
            refresh_at,
        };
        held.insert(key, kept);
        Ok(token)
    }
}

/// The TokenRequest for `key`, bound to `pod`. No audience asks for the
/// API server's own.
fn request_for(pod: &Pod, key: &Key) -> TokenRequest {
    let audiences = Some(vec![key.audience.clone()]).filter(|_| !key.audience.is_empty());
    TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences,
            expiration_seconds: Some(key.expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    }
}

/// When a token expiring at `expires` after `lifetime` seconds is due for
/// refreshing: with a fifth of its lifetime left, or 24 hours after it was
/// issued, whichever comes first (the kubelet's rule).
fn refresh_at(expires: Timestamp, lifetime: i64) -> Timestamp {
    let issued = expires - SignedDuration::from_secs(lifetime);
    let by_share = expires - SignedDuration::from_secs(lifetime / 5);
    let by_age = issued + SignedDuration::from_secs(MAX_AGE.as_secs() as i64);
    by_share.min(by_age)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{super::fake_issuer::Fake, *};

    fn pod(service_account: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "shop", "uid": "u-1" },
            "spec": { "containers": [], "serviceAccountName": service_account },
        }))
        .unwrap()
    }

    fn source(audience: Option<&str>, expiration: Option<i64>) -> ServiceAccountTokenProjection {
        ServiceAccountTokenProjection {
            audience: audience.map(str::to_owned),
            expiration_seconds: expiration,
            path: "token".to_owned(),
            ..ServiceAccountTokenProjection::default()
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[tokio::test]
    async fn asks_for_a_token_bound_to_the_pod() {
        let fake = Fake::new(at(0));
        let tokens = PodTokens::default();
        let token = tokens
            .token(
                &fake,
                &pod(Some("builder")),
                &source(Some("vault"), Some(1200)),
                at(0),
            )
            .await
            .unwrap();
        assert_eq!(token, "t1");
        let asked = fake.asked.lock().unwrap();
        let (namespace, name, request) = &asked[0];
        assert_eq!((namespace.as_str(), name.as_str()), ("shop", "builder"));
        let spec = request.spec.as_ref().unwrap();
        assert_eq!(spec.audiences.as_deref(), Some(&["vault".to_owned()][..]));
        assert_eq!(spec.expiration_seconds, Some(1200));
        let bound = spec.bound_object_ref.as_ref().unwrap();
        assert_eq!(bound.kind.as_deref(), Some("Pod"));
        assert_eq!(bound.api_version.as_deref(), Some("v1"));
        assert_eq!(bound.name.as_deref(), Some("web"));
        assert_eq!(bound.uid.as_deref(), Some("u-1"));
    }

    #[tokio::test]
    async fn defaults_to_the_api_audience_an_hour_and_the_default_account() {
        let fake = Fake::new(at(0));
        let tokens = PodTokens::default();
        (tokens
            .token(&fake, &pod(None), &source(None, None), at(0))
            .await)
            .unwrap();
        let asked = fake.asked.lock().unwrap();
        let (_, name, request) = &asked[0];
        assert_eq!(name, "default");
        let spec = request.spec.as_ref().unwrap();
        assert_eq!(spec.audiences, None);
        assert_eq!(spec.expiration_seconds, Some(3600));
    }

    #[tokio::test]
    async fn keeps_a_token_until_four_fifths_of_its_life() {
        let fake = Fake::new(at(0));
        let tokens = PodTokens::default();
        let (pod, source) = (pod(None), source(None, Some(1000)));
        let get = |now| tokens.token(&fake, &pod, &source, now);
        assert_eq!(get(at(0)).await.unwrap(), "t1");
        assert_eq!(get(at(799)).await.unwrap(), "t1");
        assert_eq!(get(at(800)).await.unwrap(), "t2");
        let other = self::source(Some("vault"), Some(1000));
        let vault = tokens.token(&fake, &pod, &other, at(800)).await.unwrap();
        assert_eq!(vault, "t3", "another audience is another token");
    }

    #[tokio::test]
    async fn refreshes_a_long_lived_token_after_a_day() {
        let mut fake = Fake::new(at(0));
        let year = 365 * 24 * 3600;
        fake.granted = Some(year);
        let tokens = PodTokens::default();
        let (pod, source) = (pod(None), source(None, Some(3600)));
        let get = |now| tokens.token(&fake, &pod, &source, now);
        assert_eq!(get(at(0)).await.unwrap(), "t1");
        assert_eq!(get(at(24 * 3600 - 1)).await.unwrap(), "t1");
        assert_eq!(get(at(24 * 3600)).await.unwrap(), "t2");
    }
}

//! Service accounts' bound tokens: issuing them (TokenRequest) and telling
//! who presents one (authentication, TokenReview), with kube-apiserver's
//! checks that the service account and the object the token is bound to
//! still exist.

pub mod token;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use skiff_etcd::keys;

use crate::store::{Store, StoreError, object_key};
pub use token::{Claims, ISSUER, InvalidToken, KeyError, Keys, Ref, Request};

/// Groups every service account is in, before its namespace's.
pub const ALL_GROUP: &str = "system:serviceaccounts";

/// The user a valid token authenticates, as kube's `UserInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Why a token authenticates no one.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid bearer token, {0}")]
    Invalid(#[from] InvalidToken),
    #[error("{0}")]
    Stale(String),
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
}

/// Verifies tokens against the key and the stored objects they name. Each
/// verification reads the service account and the bound object from etcd
/// (one or two reads): a deleted pod's token stops working at once.
#[derive(Clone)]
pub struct Authenticator {
    keys: Arc<Keys>,
    store: Store,
}

impl Authenticator {
    pub fn new(keys: Arc<Keys>, store: Store) -> Self {
        Self { keys, store }
    }

    /// Who `token` is, if valid for one of `audiences`, and which of
    /// `audiences` it is valid for.
    pub async fn authenticate(
        &self,
        token: &str,
        audiences: &[&str],
    ) -> Result<(Identity, Vec<String>), TokenError> {
        let claims = self.keys.verify(token, audiences)?;
        let private = &claims.kubernetes;
        let namespace = private.namespace.as_str();
        let account = &private.serviceaccount;
        let stored = stored_bound(
            &self.store,
            keys::SERVICE_ACCOUNTS,
            Some(namespace),
            "serviceaccounts",
            account,
        )
        .await?;
        check_uid("serviceaccount", &stored, account)?;
        if let Some(pod) = &private.pod {
            let stored =
                stored_bound(&self.store, keys::PODS, Some(namespace), "pods", pod).await?;
            check_uid("pod", &stored, pod)?;
            if !stored["metadata"]["deletionTimestamp"].is_null() {
                return Err(TokenError::Stale(format!(
                    "pod \"{}\" is marked for deletion",
                    pod.name
                )));
            }
        }
        if let Some(secret) = &private.secret {
            let stored = stored_bound(
                &self.store,
                keys::SECRETS,
                Some(namespace),
                "secrets",
                secret,
            )
            .await?;
            check_uid("secret", &stored, secret)?;
        }
        if let Some(node) = &private.node {
            let stored = stored_bound(&self.store, keys::NODES, None, "nodes", node).await?;
            check_uid("node", &stored, node)?;
        }
        let matched = audiences
            .iter()
            .filter(|audience| claims.aud.iter().any(|aud| aud == *audience))
            .map(|audience| (*audience).to_owned())
            .collect();
        Ok((identity(&claims), matched))
    }
}

/// The user a token's claims name, as kube's `serviceaccount.UserInfo`.
pub fn identity(claims: &Claims) -> Identity {
    let private = &claims.kubernetes;
    let mut extra = BTreeMap::new();
    if let Some(pod) = &private.pod {
        extra.insert(
            "authentication.kubernetes.io/pod-name".to_owned(),
            vec![pod.name.clone()],
        );
        extra.insert(
            "authentication.kubernetes.io/pod-uid".to_owned(),
            vec![pod.uid.clone()],
        );
    }
    if let Some(node) = &private.node {
        extra.insert(
            "authentication.kubernetes.io/node-name".to_owned(),
            vec![node.name.clone()],
        );
        extra.insert(
            "authentication.kubernetes.io/node-uid".to_owned(),
            vec![node.uid.clone()],
        );
    }
    extra.insert(
        "authentication.kubernetes.io/credential-id".to_owned(),
        vec![format!("JTI={}", claims.jti)],
    );
    Identity {
        name: claims.sub.clone(),
        uid: private.serviceaccount.uid.clone(),
        groups: vec![
            ALL_GROUP.to_owned(),
            format!("{ALL_GROUP}:{}", private.namespace),
        ],
        extra,
    }
}

/// The stored object `base`/`namespace`/`name`, if there is one.
pub async fn stored(
    store: &Store,
    base: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, StoreError> {
    match store.get(&object_key(base, namespace, name)).await {
        Ok(object) => Ok(Some(object)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

async fn stored_bound(
    store: &Store,
    base: &str,
    namespace: Option<&str>,
    plural: &str,
    bound: &Ref,
) -> Result<Value, TokenError> {
    stored(store, base, namespace, &bound.name)
        .await?
        .ok_or_else(|| TokenError::Stale(format!("{plural} \"{}\" not found", bound.name)))
}

/// kube's "<kind> UID (<stored>) does not match claim (<claimed>)".
fn check_uid(kind: &str, stored: &Value, claimed: &Ref) -> Result<(), TokenError> {
    let uid = stored["metadata"]["uid"].as_str().unwrap_or_default();
    if uid == claimed.uid {
        return Ok(());
    }
    Err(TokenError::Stale(format!(
        "{kind} UID ({uid}) does not match claim ({})",
        claimed.uid
    )))
}

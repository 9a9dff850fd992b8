//! Kubernetes' tokencleaner: a bootstrap token Secret
//! (`kube-system`, type `bootstrap.kubernetes.io/token`) whose expiration
//! has passed is deleted; the next pass is due when the next token expires.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use tracing::info;

use super::kind::Kind;
use super::{Context, Controller, ControllerError, meta};
use crate::bootstrap_token;

#[derive(Default)]
pub struct TokenCleaner {
    /// When the next token expires, as of the last pass.
    next_expiry: Option<Duration>,
}

impl Controller for TokenCleaner {
    const NAME: &'static str = "tokencleaner";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let now = Timestamp::now();
        let tokens: Vec<Value> = context
            .cache
            .list_in(Kind::Secret, bootstrap_token::NAMESPACE)
            .into_iter()
            .filter(|secret| secret["type"] == bootstrap_token::SECRET_TYPE)
            .collect();
        let mut deleted = false;
        for secret in tokens
            .iter()
            .filter(|secret| bootstrap_token::expired(secret, now))
        {
            info!(
                secret = meta::name(secret),
                "deleting an expired bootstrap token"
            );
            context.client.delete(Kind::Secret, secret, None).await?;
            deleted = true;
        }
        self.next_expiry = tokens
            .iter()
            .filter_map(|secret| bootstrap_token::expiration(secret).flatten())
            .filter(|at| *at > now)
            .min()
            .map(|at| {
                Duration::from_secs(at.as_second().saturating_sub(now.as_second()).max(1) as u64)
            });
        Ok(if deleted { vec![Kind::Secret] } else { vec![] })
    }

    fn wake_in(&self) -> Option<Duration> {
        self.next_expiry
    }
}

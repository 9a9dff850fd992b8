//! Deployments and ReplicaSets: a status and a `/scale`
//! subresource over `spec.replicas`.

use super::strategy::{Strategy, Subresource};

#[derive(Debug)]
pub struct ScalableStrategy;

impl Strategy for ScalableStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status, Subresource::Scale]
    }
}

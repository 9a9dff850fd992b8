//! Whether this node should still receive load-balanced traffic (KEP-3836),
//! as the sync loop last read it from the agent's Node (`NodeRecord`'s
//! `eligible`, from whichever source the agent watches), for the healthz
//! server: load balancers probing kube-proxy's `/healthz` drain the node
//! first.
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

/// Shared by the sync loop (which sets it) and the healthz server. A node
/// is eligible until its Node says otherwise, as kube-proxy's is.
#[derive(Clone, Debug)]
pub struct NodeEligibility(Arc<AtomicBool>);

impl Default for NodeEligibility {
    fn default() -> Self {
        NodeEligibility(Arc::new(AtomicBool::new(true)))
    }
}

impl NodeEligibility {
    pub fn eligible(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Takes in what the Node of `name` now says, logging a change.
    pub fn set(&self, eligible: bool, name: &str) {
        if self.0.swap(eligible, Ordering::Relaxed) != eligible {
            tracing::info!(
                node = name,
                eligible,
                "the node's eligibility for traffic changed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eligibility_follows_what_it_is_set_to() {
        let eligibility = NodeEligibility::default();
        assert!(eligibility.eligible());
        let shared = eligibility.clone();
        shared.set(false, "n");
        assert!(!eligibility.eligible());
        shared.set(true, "n");
        assert!(eligibility.eligible());
    }
}

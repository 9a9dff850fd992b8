//! The name a pod is known by on this node.
use std::fmt;

/// A pod's identity in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
}

impl PodKey {
    /// `<namespace>.<name>`: unambiguous (a namespace has no dots), and
    /// what the pod's netns and cgroup are named after.
    pub fn slug(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    /// The pod's named netns: the agent's `--pod-netns-prefix`, then the
    /// slug.
    pub fn netns(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.slug())
    }
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

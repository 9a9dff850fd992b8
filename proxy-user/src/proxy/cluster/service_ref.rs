//! The name the cluster side knows a Service (or an EndpointSlice) by.
use std::fmt;
use std::sync::Arc;

/// Identity of a Service (or of an EndpointSlice): its namespace and name.
/// Shared strings: the agent keeps a Service's reference in several maps.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceRef {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

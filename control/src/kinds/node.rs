//! Nodes: the node agent reports the status it registers with, so a create
//! keeps it.

use serde_json::Value;

use super::strategy::{Strategy, Subresource};

#[derive(Debug)]
pub struct NodeStrategy;

impl Strategy for NodeStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status]
    }

    fn initial_status(&self) -> Option<Value> {
        None
    }
}

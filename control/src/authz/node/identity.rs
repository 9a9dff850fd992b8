//! Which node a user is (kube's `nodeidentifier`): a member of
//! `system:nodes` named `system:node:<node>`.

use crate::authz::user::{NODE_USER_PREFIX, NODES_GROUP, User};

/// Whether `user` is a node, and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeIdentity<'a> {
    NotANode,
    /// In `system:nodes`, with a name that names no node.
    Unknown,
    Node(&'a str),
}

pub fn node_identity(user: &User) -> NodeIdentity<'_> {
    if !user.in_group(NODES_GROUP) {
        return NodeIdentity::NotANode;
    }
    match user.name.strip_prefix(NODE_USER_PREFIX) {
        Some(node) if !node.is_empty() => NodeIdentity::Node(node),
        _ => NodeIdentity::Unknown,
    }
}

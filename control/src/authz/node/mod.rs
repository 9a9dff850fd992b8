//! kube's Node authorizer (`--authorization-mode=Node,RBAC`): which node a
//! user is (`identity`), what each node's pods use (`graph`), and what a
//! node may do (`decision`); the server's create admission checks the
//! names the authorizer cannot see (`admission`).

pub mod admission;
pub mod decision;
pub mod graph;
pub mod identity;

pub use decision::{NodeDecision, authorize};
pub use graph::NodeGraph;

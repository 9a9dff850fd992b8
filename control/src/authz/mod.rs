//! Authorization, as kube-apiserver's: what a request asks (`attributes`),
//! judged by the chain (`chain`) of the privileged group, the Node
//! authorizer (`node`) and RBAC (`policy`, over the rules of `rules`)
//! against the objects kept in memory (`cache`, each index fed by
//! `follow`); who a request acts as (`impersonation`); the escalation
//! checks on RBAC writes (`escalation`); and the default roles
//! (`bootstrap`). Authentication says who the user is (`user`, filled in
//! by `server::auth`).

pub mod attributes;
pub mod bootstrap;
mod cache;
pub mod chain;
pub mod escalation;
mod follow;
pub mod impersonation;
pub mod node;
pub mod policy;
pub mod rules;
pub mod user;

pub use attributes::{Action, Attributes, ListOptions, ResourceAction, action};
pub use cache::AuthzCache;
pub use chain::Authorizer;
pub use policy::{Decision, Policy, RBAC_GROUP};
pub use rules::PolicyRule;
pub use user::User;

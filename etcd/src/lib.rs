//! Everything skiff knows about etcd, in one place: how objects are keyed
//! (`keys`), how an etcd is launched (`launcher`), and (with the `client`
//! feature) how to read, write, list and watch them, and how to save and
//! restore snapshots (`snapshot`).

pub mod auth;
pub mod keys;
pub mod launcher;
pub mod member;

#[cfg(feature = "client")]
pub mod backoff;
#[cfg(feature = "client")]
pub mod bulk;
#[cfg(feature = "client")]
mod expiry;
#[cfg(feature = "client")]
pub mod kv;
#[cfg(feature = "client")]
pub mod list_watch;
#[cfg(feature = "client")]
pub mod maintenance;
#[cfg(feature = "client")]
mod members;
#[cfg(feature = "client")]
pub mod snapshot;
#[cfg(all(test, feature = "client"))]
mod testing;
#[cfg(feature = "client")]
mod uid;

/// The etcd-client types that users of [`kv::Kv::client`] and raw watches
/// need, so that they do not depend on etcd-client themselves.
#[cfg(feature = "client")]
pub use etcd_client;
#[cfg(feature = "client")]
pub use uid::new_uid;

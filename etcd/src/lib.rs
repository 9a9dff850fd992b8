//! Everything skiff knows about etcd, in one place: how objects are keyed,
//! how an etcd is launched, and (with the `client` feature) how to list,
//! watch and write them.

#[cfg(feature = "client")]
pub mod bulk;

//! The agent's watch decoder (`proxy::cluster::etcd_watch::decode`): an
//! etcd key and value read as Service and EndpointSlice records. The input
//! is the key, a NUL byte and the value.
//!
//! skiff-agent is a binary crate, so its pure cluster modules are compiled
//! here from their sources, in their own module tree.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
mod proxy {
    #[path = "../../../proxy-user/src/proxy/policy.rs"]
    pub mod policy;
    pub mod cluster {
        #[path = "../../../../proxy-user/src/proxy/cluster/etcd_watch.rs"]
        pub mod etcd_watch;
        #[path = "../../../../proxy-user/src/proxy/cluster/frontends.rs"]
        pub mod frontends;
        #[path = "../../../../proxy-user/src/proxy/cluster/protocol.rs"]
        pub mod protocol;
        #[path = "../../../../proxy-user/src/proxy/cluster/records.rs"]
        pub mod records;
        #[path = "../../../../proxy-user/src/proxy/cluster/service_ref.rs"]
        pub mod service_ref;
        #[path = "../../../../proxy-user/src/proxy/cluster/state.rs"]
        pub mod state;
    }
}

fuzz_target!(|data: &[u8]| {
    let (key, value) = match data.iter().position(|&byte| byte == 0) {
        Some(split) => (&data[..split], &data[split + 1..]),
        None => (data, &b""[..]),
    };
    proxy::cluster::etcd_watch::decode(key, value);
});

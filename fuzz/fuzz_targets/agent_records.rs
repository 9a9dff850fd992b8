//! The agent's watch decoder (`proxy::cluster::etcd_watch::decode`): an
//! etcd key and value read as Service and EndpointSlice records. The input
//! is the key, a NUL byte and the value.
//!
//! skiff-agent is a binary crate, so its pure cluster modules are compiled
//! here from their sources, in their own module tree.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../proxy-user/src/proxy"]
mod proxy {
    pub mod policy;
    pub mod outlier {
        pub mod ejection;
        pub use ejection::OutlierConfig;
    }
    pub mod cluster {
        pub mod etcd_watch;
        pub mod frontends;
        pub mod protocol;
        pub mod records;
        pub mod service_ref;
        pub mod state;
        pub mod topology;
    }
}

fuzz_target!(|data: &[u8]| {
    let (key, value) = match data.iter().position(|&byte| byte == 0) {
        Some(split) => (&data[..split], &data[split + 1..]),
        None => (data, &b""[..]),
    };
    proxy::cluster::etcd_watch::decode(key, value);
});

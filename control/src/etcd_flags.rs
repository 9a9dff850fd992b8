//! The etcd client flags of skiff-control's offline subcommands
//! (`snapshot save`, `secrets re-encrypt`): the endpoints and, for an etcd
//! that serves TLS, the client identity, named as skiff-control's own.
use std::path::PathBuf;

use clap::Args;
use skiff_etcd::kv::ClientTls;

const DEFAULT_ETCD: &str = "http://127.0.0.1:2379";

#[derive(Args, Debug, Clone)]
pub struct EtcdFlags {
    /// etcd client URL; repeat or comma-separate for several members.
    #[arg(long, value_name = "URL", value_delimiter = ',', default_value = DEFAULT_ETCD)]
    pub etcd: Vec<String>,
    /// CA of an etcd that serves TLS (with --etcd-certfile and
    /// --etcd-keyfile, for `https://` endpoints).
    #[arg(long, value_name = "FILE", requires_all = ["etcd_certfile", "etcd_keyfile"])]
    etcd_cafile: Option<PathBuf>,
    /// Client certificate towards etcd.
    #[arg(long, value_name = "FILE", requires = "etcd_cafile")]
    etcd_certfile: Option<PathBuf>,
    /// Client key towards etcd.
    #[arg(long, value_name = "FILE", requires = "etcd_cafile")]
    etcd_keyfile: Option<PathBuf>,
}

impl EtcdFlags {
    /// The client identity, when the flags name one.
    pub fn tls(&self) -> Option<ClientTls> {
        ClientTls::from_flags(
            self.etcd_cafile.clone(),
            self.etcd_certfile.clone(),
            self.etcd_keyfile.clone(),
        )
    }
}

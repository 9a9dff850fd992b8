//! Writing objects to etcd as the API server stores them, with the real
//! `etcdctl`.
use std::process::Command;

use serde_json::Value;

use crate::{cmd, error::Result};

pub struct Store {
    endpoint: String,
}

impl Store {
    pub fn new(endpoint: impl Into<String>) -> Store {
        Store {
            endpoint: endpoint.into(),
        }
    }

    fn etcdctl(&self) -> Command {
        let mut command = Command::new("etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(&self.endpoint);
        command
    }

    /// Writes `object`'s JSON at `key`.
    pub fn put(&self, key: &str, object: &Value) -> Result<()> {
        // JSON objects start with `{`, so etcdctl never takes one for a flag.
        cmd::run(self.etcdctl().args(["put", key, &object.to_string()])).map(drop)
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        cmd::run(self.etcdctl().args(["del", key])).map(drop)
    }
}

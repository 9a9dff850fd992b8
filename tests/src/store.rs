//! Writing objects to etcd as the API server stores them, with the real
//! `etcdctl`.
use std::process::Command;

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
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

    /// Writes `value` at `key` as it is, JSON or not (a corrupt object).
    pub fn put_raw(&self, key: &str, value: &str) -> Result<()> {
        cmd::run(self.etcdctl().args(["put", key, value])).map(drop)
    }

    /// The object at `key`, `None` if there is none.
    pub fn get(&self, key: &str) -> Result<Option<Value>> {
        let out = cmd::run(self.etcdctl().args(["get", key, "--print-value-only"]))?;
        let text = out.trim();
        if text.is_empty() {
            return Ok(None);
        }
        serde_json::from_str(text).map(Some).map_err(|e| {
            crate::error::HarnessError::Environment(format!("{key} holds no JSON: {e}"))
        })
    }

    /// The bytes stored at `key` as they are (an encrypted value is not
    /// JSON), `None` if there is none.
    pub fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let out = cmd::run(self.etcdctl().args(["get", key, "-w", "json"]))?;
        let response: Value = serde_json::from_str(&out).map_err(|e| {
            crate::error::HarnessError::Environment(format!("etcdctl printed no JSON: {e}"))
        })?;
        let Some(value) = response["kvs"][0]["value"].as_str() else {
            return Ok(None);
        };
        BASE64_STANDARD.decode(value).map(Some).map_err(|e| {
            crate::error::HarnessError::Environment(format!("etcdctl's value is no base64: {e}"))
        })
    }

    /// The objects under `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Result<Vec<Value>> {
        let out = cmd::run(
            self.etcdctl()
                .args(["get", prefix, "--prefix", "--print-value-only"]),
        )?;
        // The API server stores compact JSON: one value per line.
        out.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).map_err(|e| {
                    crate::error::HarnessError::Environment(format!(
                        "a value under {prefix} is no JSON: {e}"
                    ))
                })
            })
            .collect()
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        cmd::run(self.etcdctl().args(["del", key])).map(drop)
    }
}

//! skiff-control end to end: a real etcd, the server on a loopback port,
//! and the real `kubectl` (installed by `cargo xtask setup`) and `curl`
//! against it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::*;
use crate::controllers::ControllerConfig;
use crate::test_support::Etcd;

mod apply;
mod basics;
mod clients;
mod ingress;
mod kubelet;
mod services;
mod storage;
mod unavailable;
mod workloads;

/// Where `cargo xtask setup` puts kubectl.
fn kubectl_path() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kubectl-venv/bin/kubectl");
    assert!(
        path.exists(),
        "kubectl is missing at {}: run cargo xtask setup",
        path.display()
    );
    path
}

const TOKEN: &str = "s3cret-token";

/// etcd + skiff-control + a scratch directory, torn down on drop.
struct Cluster {
    server: RunningServer,
    dir: PathBuf,
    etcd: Arc<Etcd>,
}

impl Cluster {
    async fn start() -> Self {
        Self::start_with(ApiConfig::default()).await
    }

    /// A cluster whose API has `api`'s pools (its bookmark interval is the
    /// tests' own).
    async fn start_with(api: ApiConfig) -> Self {
        let etcd = Arc::new(Etcd::start());
        etcd.store().await;
        Self::on(etcd, api, None).await
    }

    /// A cluster that runs the scheduler and the controllers.
    async fn start_controlled(controllers: ControllerConfig) -> Self {
        let etcd = Arc::new(Etcd::start());
        etcd.store().await;
        Self::on(etcd, ApiConfig::default(), Some(controllers)).await
    }

    /// Another skiff-control on this cluster's etcd, with its own PKI.
    async fn another_instance(&self, api: ApiConfig) -> Self {
        Self::on(self.etcd.clone(), api, None).await
    }

    async fn on(etcd: Arc<Etcd>, api: ApiConfig, controllers: Option<ControllerConfig>) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "skiff-control-e2e-{}-{}",
            std::process::id(),
            crate::test_support::free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let token_file = dir.join("tokens.csv");
        std::fs::write(
            &token_file,
            format!("{TOKEN},robot,7,\"bots,system:masters\"\n"),
        )
        .unwrap();
        let server = start(ServerConfig {
            binds: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            etcd: vec![etcd.url.clone()],
            etcd_tls: None,
            data_dir: dir.join("data"),
            join: None,
            etcd_member_ip: None,
            endpoint_leases: false,
            apiserver_node_port: None,
            advertise_addresses: vec![],
            advertise_url: None,
            kubeconfig_out: None,
            token_file: Some(token_file),
            bootstrap_token_file: None,
            api: ApiConfig {
                bookmark_interval: Duration::from_millis(300),
                ..api
            },
            controllers,
            maintenance: crate::maintenance::MaintenanceConfig::default(),
            connections: super::ConnectionLimits::default(),
            requests: super::RequestLimits::default(),
            encryption: Default::default(),
        })
        .await
        .expect("skiff-control starts");
        Self { server, dir, etcd }
    }

    fn kubectl(&self, args: &[&str]) -> Command {
        let mut command = Command::new(kubectl_path());
        command
            .arg("--kubeconfig")
            .arg(&self.server.kubeconfig)
            .args(args)
            .env("HOME", &self.dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs kubectl; (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let output = tokio::time::timeout(Duration::from_secs(20), self.kubectl(args).output())
            .await
            .expect("kubectl finishes")
            .expect("kubectl runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed: {stderr}");
        stdout
    }

    /// kubectl create/replace/apply of a JSON document, validated as kubectl
    /// does by default (strict, on the server).
    async fn send(&self, verb: &str, object: &Value) -> (bool, String, String) {
        let file = self
            .dir
            .join(format!("{verb}-{}.json", crate::test_support::free_port()));
        std::fs::write(&file, object.to_string()).unwrap();
        self.run(&[verb, "-f", file.to_str().unwrap()]).await
    }

    /// `curl` against the server, verifying it with the cluster's CA:
    /// (HTTP code, body).
    async fn curl(&self, path: &str, extra: &[&str]) -> (u16, String) {
        let url = format!("https://{}{path}", self.server.addrs[0]);
        let output = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-w",
                "\n%{http_code}",
                "--cacert",
            ])
            .arg(self.dir.join("data/pki/ca.crt"))
            .args(extra)
            .arg(url)
            .output()
            .await
            .expect("curl runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').expect("curl printed the code");
        let code = code.parse().expect("an HTTP code");
        // 000: no response at all; curl's own error says why.
        if code == 0 {
            return (code, String::from_utf8_lossy(&output.stderr).into_owned());
        }
        (code, body.to_owned())
    }
}

impl Cluster {
    /// A request with the test token and a JSON body: (HTTP code, body).
    async fn send_json(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let bearer = format!("Authorization: Bearer {TOKEN}");
        let body = body.to_string();
        let (code, text) = self
            .curl(
                path,
                &[
                    "-H",
                    &bearer,
                    "-X",
                    method,
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                    &body,
                ],
            )
            .await;
        let value = serde_json::from_str(&text).unwrap_or_else(|_| json!(text));
        (code, value)
    }

    /// GET with the test token: (HTTP code, body).
    async fn get_json(&self, path: &str) -> (u16, Value) {
        let bearer = format!("Authorization: Bearer {TOKEN}");
        let (code, text) = self.curl(path, &["-H", &bearer]).await;
        let value = serde_json::from_str(&text).unwrap_or_else(|_| json!(text));
        (code, value)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "selector": { "app": name },
            "ports": [{ "name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP" }],
        },
    })
}

//! The API server the real kube-proxy reads: a skiff-control of its own on
//! an etcd of its own, with the iptables plane's service CIDR
//! (10.100.0.0/15), and the bench's writes to it through the REST API.
//!
//! Why not the bench cluster's etcd: the skiff agents watch its
//! `/registry/services/` and `/registry/endpointslices/` directly, so every
//! Service written there would also be programmed into skiff's maps, and
//! skiff-control's own `default/kubernetes` Service would land in skiff's
//! plane. skiff-control has no key prefix option; a second etcd keeps the
//! planes apart with nothing new in either binary, and keeps the bench
//! etcd's RSS figure about skiff's Services only.
//!
//! Both processes run in cgroups below the cluster's, so tearing the
//! cluster down (also on a panic or an interrupt) kills them.

use std::{
    collections::HashSet,
    fs,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use http::{Method, StatusCode};
use serde_json::json;
use skiff_tests::{
    CONTROL_PLANE_IP, Daemon, DaemonSpec, Etcd, EtcdConfig, control_command, kubeconfig_path,
};
use tokio::{runtime::Runtime, task::JoinSet};

use skiff_api_client::ApiClient;

use super::catalog::{NAMESPACE, Svc, api_objects};

/// The iptables plane's VIP range (see `catalog::Plane::vip_base`); the
/// API server's first address of it goes to `default/kubernetes`.
const SERVICE_CIDR: &str = "10.100.0.0/15";
const TOKEN: &str = "skiff-bench-kube-proxy";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections creating objects at once.
const CONNECTIONS: usize = 8;
/// skiff-control's own LoadBalancer Service, which it creates at its first
/// start without a ClusterIP: its random address may be one the bench gives
/// a scale Service (10.100.1.0 on), which that Service's create would then
/// be refused with 422 `provided IP is already allocated`.
const INGRESS_SERVICE: &str = "/api/v1/namespaces/kube-system/services/skiff-ingress";
/// A create answered 409 finds what it would have made: the Services only
/// grow from one scale to the next. A Service with its ClusterIP given is
/// answered 422 instead (its IP is allocated before its name is checked, as
/// kube-apiserver does), so `ensure` never posts one twice.
const CREATED_OR_EXISTS: &[StatusCode] = &[StatusCode::CREATED, StatusCode::CONFLICT];

pub struct KubeApi<'rt> {
    runtime: &'rt Runtime,
    client: ApiClient,
    kubeconfig: PathBuf,
    /// Services (by name) created so far; the Services only ever grow.
    created: HashSet<String>,
}

impl<'rt> KubeApi<'rt> {
    /// Starts etcd on a free loopback port and skiff-control on the
    /// control-plane address (which node netns route to), in cgroups below
    /// `cluster_cgroup`; returns once the API answers.
    pub fn start(runtime: &'rt Runtime, cluster_cgroup: &Path, state_dir: &Path) -> Result<Self> {
        let config = EtcdConfig::on_free_ports(state_dir.join("kube-etcd"), &[])?;
        Etcd::start_detached(
            &config,
            DaemonSpec {
                name: "kube-etcd",
                state_dir,
                cgroup: Some(&cluster_cgroup.join("kube-etcd")),
            },
        )
        .context("starting the kube-proxy plane's etcd")?;

        let data_dir = state_dir.join("kube-control");
        fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let tokens = data_dir.join("tokens.csv");
        fs::write(&tokens, format!("{TOKEN},bench,bench,\"system:masters\"\n"))
            .with_context(|| format!("writing {}", tokens.display()))?;
        let bind = free_control_plane_port()?;
        let mut command = control_command(bind, &[config.local_endpoint()], &data_dir, &[])?;
        command
            .arg("--token-file")
            .arg(&tokens)
            .arg(format!("--service-cluster-ip-range={SERVICE_CIDR}"))
            // Nothing to schedule, and no controller may rewrite the
            // bench's Endpoints.
            .arg("--controllers=false");
        let control = Daemon::spawn(
            command,
            DaemonSpec {
                name: "kube-control",
                state_dir,
                cgroup: Some(&cluster_cgroup.join("kube-control")),
            },
        )
        .context("starting the kube-proxy plane's skiff-control")?;

        // The kubeconfig comes after the PKI: once it exists, the CA is
        // complete.
        let kubeconfig = kubeconfig_path(&data_dir);
        wait_for(&kubeconfig, &control)?;
        let ca_file = data_dir.join("pki/ca.crt");
        let ca = fs::read(&ca_file).with_context(|| format!("reading {}", ca_file.display()))?;
        let client = ApiClient::new(bind, TOKEN, &ca)?;
        let api = Self {
            runtime,
            client,
            kubeconfig,
            created: HashSet::new(),
        };
        api.wait_ready(&control)?;
        api.runtime.block_on(async {
            let namespace = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": { "name": NAMESPACE },
            });
            let mut connection = api.client.connect().await?;
            connection
                .call(
                    Method::POST,
                    "/api/v1/namespaces",
                    Some(namespace.to_string().as_bytes()),
                    CREATED_OR_EXISTS,
                )
                .await?;
            // No ingress controller serves this plane: the Service only
            // holds an address. skiff-control creates it at start only.
            connection
                .call(
                    Method::DELETE,
                    INGRESS_SERVICE,
                    None,
                    &[StatusCode::OK, StatusCode::NOT_FOUND],
                )
                .await
        })?;
        Ok(api)
    }

    /// The admin kubeconfig skiff-control wrote (its client certificate,
    /// the server at the control-plane address).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Creates, through the API, each of `services` (and its Endpoints)
    /// not created yet; returns how many were new. Those created before a
    /// failure count as created: a later call does not post them again.
    pub fn ensure(&mut self, services: &[Svc]) -> Result<usize> {
        let new: Vec<&Svc> = services
            .iter()
            .filter(|svc| !self.created.contains(&svc.name))
            .collect();
        let bodies: Vec<[String; 2]> = new
            .iter()
            .map(|svc| api_objects(svc).map(|object| object.to_string()))
            .collect();
        let services_path = format!("/api/v1/namespaces/{NAMESPACE}/services");
        let endpoints_path = format!("/api/v1/namespaces/{NAMESPACE}/endpoints");
        let bodies = std::sync::Arc::new(bodies);
        let (done, failed) = self.runtime.block_on(async {
            let mut workers = JoinSet::new();
            for worker in 0..CONNECTIONS.min(bodies.len()) {
                let (client, bodies) = (self.client.clone(), bodies.clone());
                let (services_path, endpoints_path) =
                    (services_path.clone(), endpoints_path.clone());
                workers.spawn(async move {
                    // The indexes into `bodies` of the Services created with
                    // their Endpoints, and what stopped this worker.
                    let mut done = Vec::new();
                    let result = async {
                        let mut connection = client.connect().await?;
                        for index in (worker..bodies.len()).step_by(CONNECTIONS) {
                            let [service, endpoints] = &bodies[index];
                            for (path, body) in
                                [(&services_path, service), (&endpoints_path, endpoints)]
                            {
                                let body = Some(body.as_bytes());
                                connection
                                    .call(Method::POST, path, body, CREATED_OR_EXISTS)
                                    .await?;
                            }
                            done.push(index);
                        }
                        anyhow::Ok(())
                    }
                    .await;
                    (done, result)
                });
            }
            let (mut done, mut failed) = (Vec::new(), None);
            while let Some(joined) = workers.join_next().await {
                let (created, result) = match joined.context("a create task panicked") {
                    Ok(worker) => worker,
                    Err(panicked) => (Vec::new(), Err(panicked)),
                };
                done.extend(created);
                if let Err(error) = result {
                    failed.get_or_insert(error);
                }
            }
            (done, failed)
        });
        self.created
            .extend(done.iter().map(|&index| new[index].name.clone()));
        match failed {
            Some(error) => Err(error),
            None => Ok(new.len()),
        }
    }

    fn wait_ready(&self, control: &Daemon) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let answered = self.runtime.block_on(async {
                let response = self
                    .client
                    .connect()
                    .await?
                    .send(Method::GET, "/api", None)
                    .await?;
                anyhow::Ok(response.status() == StatusCode::OK)
            });
            if answered.is_ok_and(|ok| ok) {
                return Ok(());
            }
            check_running(control)?;
            if Instant::now() > deadline {
                bail!(
                    "the kube-proxy plane's skiff-control did not serve in {READY_TIMEOUT:?} (log: {})",
                    control.log_file().display()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A port on the control-plane address that the kernel just reported free.
fn free_control_plane_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind((CONTROL_PLANE_IP, 0))
        .with_context(|| format!("binding {CONTROL_PLANE_IP}:0 to find a free port"))?;
    Ok(listener.local_addr()?)
}

/// Until skiff-control has written `file`.
fn wait_for(file: &Path, control: &Daemon) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if file.exists() {
            return Ok(());
        }
        check_running(control)?;
        if Instant::now() > deadline {
            bail!(
                "skiff-control wrote no {} in {READY_TIMEOUT:?}",
                file.display()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn check_running(control: &Daemon) -> Result<()> {
    if control.is_running() {
        Ok(())
    } else {
        bail!(
            "the kube-proxy plane's skiff-control exited (log: {})",
            control.log_file().display()
        )
    }
}

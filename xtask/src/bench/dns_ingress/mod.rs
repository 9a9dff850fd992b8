//! The DNS and Ingress figures, on a cluster of their own: two nodes,
//! etcd, an agent per node and skiff-control (the agents' DNS and Ingress
//! are fed through the API, as a user's objects are). Each figure sets
//! skiff's agent against a Debian baseline measured in the same rounds:
//! `dns` against dnsmasq serving the same records, `ingress` against nginx
//! proxying the same route to the same backends.
//!
//! The parts: `dns` and `dnsmasq`, `ingress`, `nginx` and `wrk`.

mod dns;
mod dnsmasq;
mod ingress;
mod nginx;
mod wrk;

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use skiff_api_client::ApiClient;
use skiff_tests::{Pod, ProcessGuard, Testbed};
use tokio::runtime::Runtime;

use super::{
    plan::Plan,
    progress::Progress,
    results::{Figure, Propagation, Samples},
};

/// What the DNS and Ingress parts measured; a part not asked for is empty.
pub struct Measured {
    pub dns: Vec<Figure>,
    pub dns_propagation: Option<Propagation>,
    pub ingress: Vec<Figure>,
}

const TOKEN: &str = "skiff-bench-dns-ingress";
const NAMESPACE: &str = "default";
/// Backend pods behind the Ingress route and the headless Service, on node 2.
const BACKENDS: usize = 2;

pub fn run(
    runtime: &Runtime,
    plan: &Plan,
    state_dir: &Path,
    parts: (bool, bool),
    progress: &Progress,
) -> Result<Measured> {
    let (with_dns, with_ingress) = parts;
    progress.step("DNS and Ingress: starting a 2-node cluster with skiff-control");
    let mut rig = Rig::start(runtime, state_dir)?;
    let mut measured = Measured {
        dns: Vec::new(),
        dns_propagation: None,
        ingress: Vec::new(),
    };
    if with_dns {
        let (figures, propagation) = dns::run(&mut rig, plan, progress)?;
        measured.dns = figures;
        measured.dns_propagation = Some(propagation);
    }
    if with_ingress {
        measured.ingress = ingress::run(&mut rig, plan, progress)?;
    }
    Ok(measured)
}

/// The cluster: skiff-control reached with a token, the client pod on node
/// 1, nginx backends on node 2.
pub struct Rig<'rt> {
    runtime: &'rt Runtime,
    api: ApiClient,
    pub client: Pod,
    pub backends: Vec<Pod>,
    state_dir: PathBuf,
    servers: Vec<ProcessGuard>,
    // Last: its teardown kills what the guards above ran in.
    testbed: Testbed,
}

impl<'rt> Rig<'rt> {
    fn start(runtime: &'rt Runtime, state_dir: &Path) -> Result<Self> {
        fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let mut testbed = Testbed::start(2).context("starting the cluster")?;
        super::remove_on_interrupt(testbed.cluster().prefix());
        let tokens = state_dir.join("tokens.csv");
        fs::write(&tokens, format!("{TOKEN},bench,bench,\"system:masters\"\n"))
            .with_context(|| format!("writing {}", tokens.display()))?;
        let token_flag = format!("--token-file={}", tokens.display());
        let kubeconfig = testbed
            .start_control(&[&token_flag])
            .context("starting skiff-control")?;
        let api = api_client(&kubeconfig)?;
        let client = testbed.add_pod(1, "client")?;
        let backends = (1..=BACKENDS)
            .map(|i| testbed.add_pod(2, &format!("web-{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rig = Rig {
            runtime,
            api,
            client,
            backends,
            state_dir: state_dir.to_owned(),
            servers: Vec::new(),
            testbed,
        };
        for index in 0..BACKENDS {
            let pod = rig.backends[index].clone();
            let server = nginx::backend(&pod, &rig.state_dir)?;
            rig.servers.push(server);
        }
        Ok(rig)
    }

    pub fn node_ip(&self, node: usize) -> Ipv4Addr {
        self.testbed.cluster().node(node).ip()
    }

    pub fn node(&self, node: usize) -> &skiff_tests::Node {
        self.testbed.cluster().node(node)
    }

    pub fn ext(&self) -> &skiff_tests::Host {
        self.testbed.cluster().ext()
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Keeps a server running until the rig is dropped.
    pub fn keep(&mut self, server: ProcessGuard) {
        self.servers.push(server);
    }

    /// Creates each object at its collection's `path`, several at once; an
    /// object that exists already counts as created.
    pub fn create_all(&self, objects: Vec<(String, Value)>) -> Result<()> {
        const CONNECTIONS: usize = 8;
        let objects = std::sync::Arc::new(objects);
        self.runtime.block_on(async {
            let mut workers = tokio::task::JoinSet::new();
            for worker in 0..CONNECTIONS.min(objects.len()) {
                let (client, objects) = (self.api.clone(), objects.clone());
                workers.spawn(async move {
                    let mut connection = client.connect().await?;
                    for (path, object) in objects.iter().skip(worker).step_by(CONNECTIONS) {
                        let body = object.to_string();
                        connection
                            .call(
                                Method::POST,
                                path,
                                Some(body.as_bytes()),
                                &[StatusCode::CREATED, StatusCode::CONFLICT],
                            )
                            .await?;
                    }
                    anyhow::Ok(())
                });
            }
            while let Some(joined) = workers.join_next().await {
                joined.context("a create task panicked")??;
            }
            anyhow::Ok(())
        })
    }

    /// One connection to the API, for creates timed one at a time.
    pub fn connect(&self) -> Result<skiff_api_client::Connection> {
        self.runtime.block_on(self.api.connect())
    }

    pub fn create_on(
        &self,
        connection: &mut skiff_api_client::Connection,
        path: &str,
        object: &Value,
    ) -> Result<()> {
        let body = object.to_string();
        self.runtime
            .block_on(connection.call(
                Method::POST,
                path,
                Some(body.as_bytes()),
                &[StatusCode::CREATED],
            ))
            .map(drop)
    }

    pub fn backend_ips(&self) -> Vec<Ipv4Addr> {
        self.backends.iter().map(Pod::ip).collect()
    }
}

/// The API client for the server in `kubeconfig`, with the bench's token
/// and the cluster CA beside it (`<data dir>/pki/ca.crt`).
fn api_client(kubeconfig: &Path) -> Result<ApiClient> {
    let text = fs::read_to_string(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    // skiff-control writes it as JSON (which is YAML too).
    let config: Value = serde_json::from_str(&text)
        .with_context(|| format!("reading {} as JSON", kubeconfig.display()))?;
    let server = config["clusters"][0]["cluster"]["server"]
        .as_str()
        .and_then(|url| url.strip_prefix("https://"))
        .with_context(|| format!("no https server in {}", kubeconfig.display()))?;
    let addr: SocketAddr = server
        .parse()
        .with_context(|| format!("the server address {server:?}"))?;
    let data_dir = kubeconfig.parent().context("the kubeconfig's directory")?;
    let ca_file = skiff_tests::cluster_ca_path(data_dir);
    let ca = fs::read(&ca_file).with_context(|| format!("reading {}", ca_file.display()))?;
    ApiClient::new(addr, TOKEN, &ca)
}

/// The collection path of namespaced `resource` in `group/version` (`v1`
/// for the core group).
pub fn collection(api_version: &str, resource: &str) -> String {
    let root = if api_version.contains('/') {
        "apis"
    } else {
        "api"
    };
    format!("/{root}/{api_version}/namespaces/{NAMESPACE}/{resource}")
}

/// A Service without a selector (the bench writes its endpoints), with a
/// ClusterIP of its own choosing or `None` for a headless one.
pub fn service(name: &str, cluster_ip: Option<Ipv4Addr>, port: u16) -> (String, Value) {
    let cluster_ip = cluster_ip.map_or_else(|| "None".to_owned(), |ip| ip.to_string());
    let object = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "namespace": NAMESPACE },
        "spec": {
            "clusterIP": cluster_ip,
            "ports": [{ "name": "http", "protocol": "TCP", "port": port, "targetPort": port }],
        },
    });
    (collection("v1", "services"), object)
}

/// The EndpointSlice of Service `service`: `addresses`, ready, on port
/// `port` named `http`.
pub fn endpoint_slice(service: &str, addresses: &[Ipv4Addr], port: u16) -> (String, Value) {
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|ip| json!({ "addresses": [ip.to_string()], "conditions": { "ready": true } }))
        .collect();
    let object = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service}-bench"),
            "namespace": NAMESPACE,
            "labels": { "kubernetes.io/service-name": service },
        },
        "addressType": "IPv4",
        "ports": [{ "name": "http", "protocol": "TCP", "port": port }],
        "endpoints": endpoints,
    });
    (collection("discovery.k8s.io/v1", "endpointslices"), object)
}

/// Runs `command` and fails with the last line it wrote if it fails; its
/// stdout.
pub fn output_of(command: &mut std::process::Command) -> Result<String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // anyhow's "Error: ..." line when there is one (a backtrace may
        // follow it), else the last line that says anything.
        let why = stderr
            .lines()
            .find(|line| line.starts_with("Error: "))
            .or_else(|| stderr.lines().rev().find(|line| !line.trim().is_empty()))
            .or(stdout.lines().last())
            .unwrap_or("")
            .trim();
        bail!("{program} failed ({}): {why}", output.status);
    }
    Ok(stdout)
}

/// Figure `key` with a sample list per variant; `unavailable` gives, per
/// variant, why it cannot be measured in this run.
pub fn figure(
    (key, title, unit, higher_is_better): (&'static str, &'static str, &'static str, bool),
    baseline: &'static str,
    variants: &[(&'static str, Option<String>)],
) -> Figure {
    let variants = variants
        .iter()
        .map(|(name, unavailable)| {
            let samples = Samples {
                unavailable: unavailable.clone(),
                ..Samples::default()
            };
            (*name, samples)
        })
        .collect();
    Figure {
        key,
        title,
        unit,
        higher_is_better,
        baseline,
        variants,
    }
}

/// `plan.rounds` rounds, each measuring every variant the figures can
/// measure once, each round starting with another variant (so a noisy
/// neighbour hits them alike). `measure` gives (figure key, value) pairs;
/// an error is recorded under every figure.
pub fn rounds<T>(
    plan: &Plan,
    figures: &mut [Figure],
    variants: &[(&'static str, T)],
    mut measure: impl FnMut(&T) -> Result<Vec<(&'static str, f64)>>,
    progress: &Progress,
) {
    for round in 0..plan.rounds {
        for offset in 0..variants.len() {
            let (name, target) = &variants[(round + offset) % variants.len()];
            let available = figures.iter().all(|f| {
                f.variants
                    .get(name)
                    .is_some_and(|s| s.unavailable.is_none())
            });
            if !available {
                continue;
            }
            match measure(target) {
                Ok(values) => {
                    let mut shown = Vec::new();
                    for (key, value) in values {
                        if let Some(figure) = figures.iter_mut().find(|f| f.key == key) {
                            shown.push(format!("{value:.1} {}", figure.unit));
                            figure.variants.entry(name).or_default().values.push(value);
                        }
                    }
                    progress.step(format_args!(
                        "{} round {}/{} {name}: {}",
                        figures[0].key,
                        round + 1,
                        plan.rounds,
                        shown.join(", ")
                    ));
                }
                Err(error) => {
                    progress.step(format_args!("{} {name}: failed: {error:#}", figures[0].key));
                    for figure in figures.iter_mut() {
                        let samples = figure.variants.entry(name).or_default();
                        samples.errors.push(format!("{error:#}"));
                    }
                }
            }
        }
    }
}

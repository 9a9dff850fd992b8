//! `cargo xtask up` and `down` on the machine's one local cluster (prefix
//! `skiff`): the supervisor brings back killed daemons with the cluster's
//! objects, pod addresses and Service traffic intact, a second `up`
//! changes nothing, and `backup`, `down`, `restore` bring back the objects
//! and Service addresses; etcd serves only clients with certificates, the
//! agents' etcd user reads no Secret, and Secrets are stored encrypted.
//! Needs root and the binaries (`cargo xtask build`).
//!
//! The local cluster's supervisor holds the machine-wide cluster lock while
//! it runs, so other cluster tests wait for it. Bringing a cluster up and
//! down takes most of the time, so one cluster goes through every step in
//! turn, the steps that must see a fresh cluster first; each step leaves it
//! up and serving for the next. The test refuses to run over a developer's
//! cluster or kept data, and tears its cluster down at the end, also on a
//! panic.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use skiff_tests::{CallResult, kubectl, parse_call_output, sync_count};

const RUN_DIR: &str = "/run/skiff";
const DATA_DIR: &str = "/var/lib/skiff";
const LOG_DIR: &str = "/var/log/skiff";
const SUPERVISOR_LOG: &str = "/var/log/skiff/supervisor.log";
const TIMEOUT: Duration = Duration::from_secs(60);

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("the xtask binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A local cluster brought up by `xtask up`; `xtask down` (data removed)
/// when dropped.
struct LocalCluster {
    kubeconfig: PathBuf,
    first_up: String,
}

impl LocalCluster {
    fn up() -> LocalCluster {
        let pid_file = Path::new(RUN_DIR).join("supervisor.pid");
        assert!(
            !pid_file.exists() && !Path::new("/run/netns/skiff-fabric").exists(),
            "a local cluster (`cargo xtask up`) is up on this machine; this test \
             would replace it. Run `cargo xtask down` first"
        );
        assert!(
            !Path::new(DATA_DIR).exists(),
            "{DATA_DIR} holds a local cluster's kept data, which this test would \
             use and then remove. Run `cargo xtask down` first"
        );
        // From here on the guard brings down whatever `up` got to build.
        let mut cluster = LocalCluster {
            kubeconfig: PathBuf::new(),
            first_up: String::new(),
        };
        let output = xtask(&["up", "--no-build"]);
        cluster.first_up = text(&output);
        assert!(
            output.status.success(),
            "`xtask up` failed:\n{}",
            cluster.first_up
        );
        cluster.kubeconfig = cluster
            .first_up
            .lines()
            .find_map(|l| l.trim().strip_prefix("kubeconfig"))
            .map(|path| PathBuf::from(path.trim()))
            .unwrap_or_else(|| panic!("`up` printed no kubeconfig:\n{}", cluster.first_up));
        cluster
    }

    /// `kubectl get <what> -o json`'s items.
    fn get(&self, what: &str) -> Vec<Value> {
        self.get_with(what, &[])
    }

    /// [`LocalCluster::get`] with more of kubectl's flags.
    fn get_with(&self, what: &str, flags: &[&str]) -> Vec<Value> {
        let output = kubectl(&self.kubeconfig)
            .expect("kubectl is installed")
            .args(["get", what, "-o", "json"])
            .args(flags)
            .output()
            .expect("kubectl runs");
        assert!(
            output.status.success(),
            "kubectl get {what}: {}",
            text(&output)
        );
        let list: Value = serde_json::from_slice(&output.stdout).expect("kubectl prints JSON");
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// `kind/name` → the value `pick` takes from each object of `what`.
    fn map(&self, what: &str, pick: impl Fn(&Value) -> Value) -> BTreeMap<String, Value> {
        self.get(what)
            .iter()
            .map(|o| {
                let kind = o["kind"].as_str().unwrap_or("?");
                let key = format!("{kind}/{}", o["metadata"]["name"].as_str().unwrap_or("?"));
                (key, pick(o))
            })
            .collect()
    }

    fn api_answers(&self) -> bool {
        kubectl(&self.kubeconfig)
            .expect("kubectl is installed")
            .args(["get", "--raw", "/api"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn all_pods_ready(&self) -> bool {
        let pods = self.get("pods");
        !pods.is_empty()
            && pods.iter().all(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    }

    /// `skiff-echo call tcp <target>` from the `client` pod, through
    /// `xtask exec`.
    fn call_from_client(&self, target: &str) -> Vec<CallResult> {
        let output = xtask(&[
            "exec",
            "client",
            "--",
            "skiff-echo",
            "call",
            "tcp",
            target,
            "--count",
            "5",
        ]);
        assert!(
            output.status.success(),
            "`xtask exec` failed: {}",
            text(&output)
        );
        parse_call_output(&String::from_utf8_lossy(&output.stdout)).expect("call results")
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let output = xtask(&["down"]);
        if !output.status.success() {
            eprintln!("`xtask down` failed:\n{}", text(&output));
        }
    }
}

/// Polls `condition` every 100 ms until it holds; panics after [`TIMEOUT`].
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// The pid in `<RUN_DIR>/<daemon>.pid`.
fn recorded_pid(daemon: &str) -> u32 {
    let path = Path::new(RUN_DIR).join(format!("{daemon}.pid"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{} holds no pid: {text:?}", path.display()))
}

fn is_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

fn supervisor_log() -> String {
    fs::read_to_string(SUPERVISOR_LOG).unwrap_or_default()
}

/// SIGKILLs `daemon` and waits until the supervisor has logged its exit and
/// its restart and the new process runs; returns how long that took.
fn kill_and_see_it_back(daemon: &str) -> Duration {
    let old = recorded_pid(daemon);
    let log_before = supervisor_log().len();
    let status = Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -KILL {old} ({daemon}) failed");
    let exited = format!("{daemon} (pid {old}) exited (killed by signal: 9 (SIGKILL))");
    let restarted = format!("restarted {daemon} as pid ");
    let mut new: Option<u32> = None;
    let took = wait_for(&format!("the supervisor to restart {daemon}"), || {
        let log = supervisor_log();
        let fresh = log.get(log_before..).unwrap_or_default();
        new = fresh
            .lines()
            .skip_while(|l| !l.contains(&exited))
            .find_map(|l| l.split(&restarted).nth(1))
            .filter(|rest| rest.contains("(restart "))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok());
        new.is_some_and(is_alive)
    });
    let new = new.expect("waited for it");
    assert_ne!(new, old, "{daemon} has the pid it had before the kill");
    assert_eq!(
        recorded_pid(daemon),
        new,
        "{daemon}'s pid file names the new process"
    );
    assert!(!is_alive(old), "{daemon}'s old process {old} still runs");
    let own_log = fs::read_to_string(format!("{LOG_DIR}/{daemon}.log")).unwrap_or_default();
    assert!(
        own_log.contains(&exited),
        "{daemon}'s own log does not say it was restarted"
    );
    took
}

fn cluster_ip(cluster: &LocalCluster, service: &str) -> String {
    let services = cluster.map("services", |s| s["spec"]["clusterIP"].clone());
    services[&format!("Service/{service}")]
        .as_str()
        .unwrap_or_else(|| panic!("service {service} has no ClusterIP: {services:?}"))
        .to_owned()
}

/// Service traffic works: five calls from `client` to the echo Service's
/// ClusterIP all reach an echo pod.
fn assert_service_traffic(cluster: &LocalCluster, echo_ip: &str) {
    let results = cluster.call_from_client(&format!("{echo_ip}:80"));
    assert_eq!(results.len(), 5, "five attempts: {results:?}");
    for result in &results {
        match result {
            CallResult::Ok { backend, .. } => {
                assert!(backend.starts_with("echo-"), "answered by {backend}")
            }
            CallResult::Failed { error, .. } => panic!("a call to {echo_ip}:80 failed: {error}"),
        }
    }
}

/// Each agent bootstrapped its client certificate with the bootstrap
/// token (an issued CertificateSigningRequest for `system:node:<name>`
/// from a `system:bootstrap:` user) and writes its Node through the API
/// (the Node's `/status` writes are recorded in its managedFields, which
/// an etcd write never has).
fn assert_nodes_have_their_own_identity(cluster: &LocalCluster) {
    let requests = cluster.get("csr");
    // kubectl leaves managedFields out unless asked.
    let nodes = cluster.get_with("nodes", &["--show-managed-fields"]);
    assert!(!nodes.is_empty(), "no Nodes");
    let bootstrapped = requests
        .iter()
        .filter(|csr| {
            csr["spec"]["username"]
                .as_str()
                .is_some_and(|user| user.starts_with("system:bootstrap:"))
                && csr["status"]["certificate"].is_string()
        })
        .count();
    assert!(
        bootstrapped >= nodes.len(),
        "fewer issued bootstrap requests than Nodes: {requests:#?}"
    );
    for node in &nodes {
        let name = node["metadata"]["name"].as_str().unwrap();
        let through_status = node["metadata"]["managedFields"]
            .as_array()
            .is_some_and(|fields| fields.iter().any(|f| f["subresource"] == "status"));
        assert!(
            through_status,
            "Node {name} was not written through /status: {node:#}"
        );
    }
}

/// The supervisor brings back killed daemons with the cluster's objects,
/// pod addresses and Service traffic intact.
fn killed_daemons_come_back_with_objects_pod_ips_and_service_traffic_intact(
    cluster: &LocalCluster,
) {
    let spec_of = |o: &Value| serde_json::json!([o["metadata"]["uid"], o["spec"]]);
    let objects_before = [
        cluster.map("deployments", spec_of),
        cluster.map("services", spec_of),
    ];
    let pod_ips = |c: &LocalCluster| c.map("pods", |p| p["status"]["podIP"].clone());
    let ips_before = pod_ips(cluster);
    assert_eq!(ips_before.len(), 7, "the examples' pods: {ips_before:?}");
    let echo_ip = cluster_ip(cluster, "echo");
    assert_service_traffic(cluster, &echo_ip);
    assert_nodes_have_their_own_identity(cluster);

    let took = kill_and_see_it_back("control");
    wait_for("skiff-control to serve again", || cluster.api_answers());
    eprintln!("control back in {took:?}");

    let took = kill_and_see_it_back("etcd");
    wait_for("the API to read etcd again", || {
        cluster.api_answers() && !cluster.get("services").is_empty()
    });
    eprintln!("etcd back in {took:?}");

    let agent_log = Path::new("/var/log/skiff/agent-node1.log");
    let syncs = sync_count(agent_log);
    let took = kill_and_see_it_back("agent-node1");
    wait_for("the restarted agent on node1 to sync", || {
        sync_count(agent_log) > syncs
    });
    eprintln!("agent-node1 back in {took:?}");

    wait_for("every pod to be Ready", || cluster.all_pods_ready());
    let objects_after = [
        cluster.map("deployments", spec_of),
        cluster.map("services", spec_of),
    ];
    assert_eq!(
        objects_after, objects_before,
        "Deployments and Services changed"
    );
    assert_eq!(
        pod_ips(cluster),
        ips_before,
        "pods or their addresses changed"
    );
    assert_service_traffic(cluster, &echo_ip);
}

/// On a cluster just brought up, a second `up` restarts and changes
/// nothing.
fn a_second_up_changes_nothing(cluster: &LocalCluster) {
    let daemons = [
        "supervisor",
        "etcd",
        "control",
        "agent-node1",
        "agent-node2",
    ];
    let pids = || daemons.map(recorded_pid);
    let versions = |c: &LocalCluster| {
        ["deployments", "services", "pods"]
            .map(|what| c.map(what, |o| o["metadata"]["resourceVersion"].clone()))
    };
    let pids_before = pids();
    let versions_before = versions(cluster);
    let log_before = supervisor_log();

    let output = xtask(&["up", "--no-build"]);
    let said = text(&output);
    assert!(output.status.success(), "the second `up` failed:\n{said}");
    assert!(
        said.contains("is already up") && said.contains("changing nothing"),
        "the second `up` does not say it changed nothing:\n{said}"
    );
    assert_eq!(pids(), pids_before, "the second `up` restarted a daemon");
    assert!(pids_before.iter().all(|&p| is_alive(p)), "a daemon died");
    assert_eq!(
        versions(cluster),
        versions_before,
        "the second `up` changed an object"
    );
    assert_eq!(supervisor_log(), log_before, "the supervisor did something");
    assert!(
        cluster.first_up.contains("skiff is up"),
        "the first `up` built the cluster:\n{}",
        cluster.first_up
    );
}

/// What a reboot leaves (`down --keep-data`) is enough for `up` to bring
/// back the same objects, pods on their addresses, and Service traffic.
fn up_after_down_keep_data_brings_back_objects_and_pod_ips(cluster: &LocalCluster) {
    let identity = |o: &Value| o["metadata"]["uid"].clone();
    let objects =
        |c: &LocalCluster| ["deployments", "services", "pods"].map(|what| c.map(what, identity));
    let pod_ips = |c: &LocalCluster| c.map("pods", |p| p["status"]["podIP"].clone());
    let (objects_before, ips_before) = (objects(cluster), pod_ips(cluster));

    // What a reboot leaves: the data, and nothing of the network or processes.
    let output = xtask(&["down", "--keep-data"]);
    let said = text(&output);
    assert!(
        output.status.success(),
        "`down --keep-data` failed:\n{said}"
    );
    assert!(said.contains("kept the cluster's data"), "{said}");
    assert!(!Path::new("/run/netns/skiff-fabric").exists(), "{said}");
    assert!(!Path::new(RUN_DIR).exists(), "{said}");

    let output = xtask(&["up", "--no-build"]);
    let said = text(&output);
    assert!(
        output.status.success(),
        "`up` over kept data failed:\n{said}"
    );
    assert!(said.contains("restoring the cluster"), "{said}");
    wait_for("every pod to be Ready", || cluster.all_pods_ready());
    assert_eq!(
        objects(cluster),
        objects_before,
        "objects were lost or made anew"
    );
    assert_eq!(
        pod_ips(cluster),
        ips_before,
        "pods or their addresses changed"
    );
    assert_service_traffic(cluster, &cluster_ip(cluster, "echo"));
}

/// `up` restarts the daemons of a cluster whose supervisor died, without
/// restarting its pods, and rebuilds a deleted netns.
fn up_repairs_a_lost_supervisor_and_a_deleted_netns(cluster: &LocalCluster) {
    let identity = |o: &Value| o["metadata"]["uid"].clone();
    let started = |c: &LocalCluster| {
        c.map("pods", |p| {
            serde_json::json!([
                p["status"]["podIP"],
                p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
            ])
        })
    };
    let pods_before = started(cluster);
    let objects_before = cluster.map("deployments", identity);

    // Without its supervisor, the daemons are restarted and the pods, whose
    // network is intact, keep running.
    let supervisor = recorded_pid("supervisor");
    let status = Command::new("kill")
        .args(["-KILL", &supervisor.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    wait_for("the supervisor to die", || !is_alive(supervisor));
    let output = xtask(&["up", "--no-build"]);
    let said = text(&output);
    assert!(
        output.status.success(),
        "`up` without a supervisor failed:\n{said}"
    );
    assert!(said.contains("supervisor is gone"), "{said}");
    assert_ne!(recorded_pid("supervisor"), supervisor);
    assert!(is_alive(recorded_pid("supervisor")));
    assert_eq!(started(cluster), pods_before, "pods were restarted");

    // A missing netns is built again; the pods come back on their addresses.
    let status = Command::new("ip")
        .args(["netns", "delete", "skiff-ext"])
        .status()
        .expect("ip runs");
    assert!(status.success());
    let output = xtask(&["up", "--no-build"]);
    let said = text(&output);
    assert!(
        output.status.success(),
        "`up` without skiff-ext failed:\n{said}"
    );
    assert!(said.contains("netns skiff-ext missing"), "{said}");
    assert!(Path::new("/run/netns/skiff-ext").exists());
    wait_for("every pod to be Ready", || cluster.all_pods_ready());
    let ip_of = |pods: &BTreeMap<String, Value>| {
        pods.iter()
            .map(|(name, p)| (name.clone(), p[0].clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        ip_of(&started(cluster)),
        ip_of(&pods_before),
        "pod addresses changed"
    );
    assert_eq!(cluster.map("deployments", identity), objects_before);
    assert_service_traffic(cluster, &cluster_ip(cluster, "echo"));
}

/// `backup`, `down`, `restore` bring back the objects with their Service
/// addresses, and Service traffic; a restore over a cluster is refused.
fn backup_down_restore_brings_back_objects_service_addresses_and_traffic(cluster: &LocalCluster) {
    let identity = |o: &Value| serde_json::json!([o["metadata"]["uid"], o["spec"]]);
    let objects = |c: &LocalCluster| ["deployments", "services"].map(|what| c.map(what, identity));
    let objects_before = objects(cluster);
    let archive = std::env::temp_dir().join(format!("skiff-backup-{}.tar", std::process::id()));

    let output = xtask(&["backup", &archive.to_string_lossy()]);
    let said = text(&output);
    assert!(output.status.success(), "`backup` failed:\n{said}");
    assert!(said.contains("saved "), "{said}");
    let output = xtask(&["down"]);
    assert!(output.status.success(), "`down` failed:\n{}", text(&output));
    assert!(!Path::new(DATA_DIR).exists());

    let output = xtask(&["restore", &archive.to_string_lossy(), "--no-build"]);
    let said = text(&output);
    let _ = fs::remove_file(&archive);
    assert!(output.status.success(), "`restore` failed:\n{said}");
    assert!(
        said.contains("restored ") && said.contains("skiff is up"),
        "{said}"
    );
    wait_for("every pod to be Ready", || cluster.all_pods_ready());
    assert_eq!(
        objects(cluster),
        objects_before,
        "objects, ClusterIPs or NodePorts differ after the restore"
    );
    assert_service_traffic(cluster, &cluster_ip(cluster, "echo"));

    let output = xtask(&["restore", &archive.to_string_lossy(), "--no-build"]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("holds a cluster: `cargo xtask down` removes it first"),
        "{}",
        text(&output)
    );
}

/// The PKI of the local cluster's skiff-control, where its etcd's CA and
/// client certificates are.
const ETCD_PKI: &str = "/var/lib/skiff/control/pki/etcd";
const ETCD_LOG: &str = "/var/log/skiff/etcd.log";

/// etcdctl (API v3) against the local cluster's etcd, as the etcd user of
/// `client` (`apiserver-etcd-client`: root, `agent-etcd-client`:
/// skiff-agent), or with no certificate at all.
fn etcdctl(client: Option<&str>, args: &[&str]) -> Output {
    let pki = Path::new(ETCD_PKI);
    let mut command = Command::new("/usr/bin/etcdctl");
    command
        .env("ETCDCTL_API", "3")
        .args(["--endpoints=https://127.0.0.1:2379", "--cacert"])
        .arg(pki.join("ca.crt"))
        .args(["--dial-timeout", "2s", "--command-timeout", "3s"]);
    if let Some(client) = client {
        command
            .arg("--cert")
            .arg(pki.join(format!("{client}.crt")))
            .arg("--key")
            .arg(pki.join(format!("{client}.key")));
    }
    command.args(args).output().expect("etcdctl runs")
}

const ROOT: Option<&str> = Some("apiserver-etcd-client");
const AGENT: Option<&str> = Some("agent-etcd-client");

fn assert_refused(output: &Output, why: &str, what: &str) {
    assert!(
        !output.status.success() && text(output).contains(why),
        "{what} was not refused with {why:?}:\n{}",
        text(output)
    );
}

/// etcd serves only clients with a certificate of its CA; the agents'
/// user reads Pods but no Secret and writes nothing but its pods and their
/// Events; root reads everything, and Secrets are encrypted at rest.
fn assert_etcd_trust(cluster: &LocalCluster) {
    let rejected = || {
        fs::read_to_string(ETCD_LOG)
            .unwrap_or_default()
            .matches("client didn't provide a certificate")
            .count()
    };
    let before = rejected();
    let output = etcdctl(None, &["get", "/registry/pods/", "--prefix", "--keys-only"]);
    assert!(
        !output.status.success(),
        "etcd answered a client without a certificate:\n{}",
        text(&output)
    );
    wait_for("etcd to log the refused handshake", || rejected() > before);

    let output = kubectl(&cluster.kubeconfig)
        .expect("kubectl is installed")
        .args([
            "create",
            "secret",
            "generic",
            "etcd-trust",
            "--from-literal=k=v",
        ])
        .output()
        .expect("kubectl runs");
    assert!(output.status.success(), "{}", text(&output));

    let pods = etcdctl(
        AGENT,
        &["get", "/registry/pods/", "--prefix", "--keys-only"],
    );
    assert!(
        pods.status.success() && text(&pods).contains("/registry/pods/default/"),
        "the agents' user cannot read Pods:\n{}",
        text(&pods)
    );
    let denied = "permission denied";
    let secret = "/registry/secrets/default/etcd-trust";
    assert_refused(
        &etcdctl(AGENT, &["get", secret]),
        denied,
        "an agent's Secret read",
    );
    assert_refused(
        &etcdctl(AGENT, &["get", "/registry/secrets/", "--prefix"]),
        denied,
        "an agent's Secrets list",
    );
    for key in [
        "/registry/secrets/default/etcd-trust",
        "/registry/services/specs/default/etcd-trust",
        "/registry/clusterrolebindings/etcd-trust",
        // Agents write their pods' status and Events through the API server.
        "/registry/pods/default/etcd-trust",
        "/registry/events/default/etcd-trust",
    ] {
        assert_refused(
            &etcdctl(AGENT, &["put", key, "x"]),
            denied,
            &format!("an agent's put of {key}"),
        );
    }

    let stored = etcdctl(ROOT, &["get", secret, "--print-value-only"]);
    assert!(
        stored.status.success(),
        "root cannot read: {}",
        text(&stored)
    );
    assert!(
        stored.stdout.starts_with(b"k8s:enc:aesgcm:v1:key1:"),
        "the Secret is not stored encrypted: {:?}",
        String::from_utf8_lossy(&stored.stdout[..stored.stdout.len().min(40)])
    );
}

/// [`assert_etcd_trust`], before and after a reboot.
fn etcd_asks_for_certificates_and_the_agents_may_read_pods_but_no_secrets(cluster: &LocalCluster) {
    assert_etcd_trust(cluster);

    // After a reboot etcd's users and roles are found in place (enabling
    // them again changes nothing) and the key is the one kept.
    let output = xtask(&["down", "--keep-data"]);
    assert!(
        output.status.success(),
        "`down --keep-data` failed:\n{}",
        text(&output)
    );
    let output = xtask(&["up", "--no-build"]);
    assert!(
        output.status.success(),
        "`up` over kept data failed:\n{}",
        text(&output)
    );
    wait_for("the API server", || cluster.api_answers());
    let output = kubectl(&cluster.kubeconfig)
        .expect("kubectl is installed")
        .args(["get", "secret", "etcd-trust", "-o", "jsonpath={.data.k}"])
        .output()
        .expect("kubectl runs");
    assert_eq!(
        text(&output),
        "dg==",
        "the Secret does not read back after the restart"
    );
    let output = kubectl(&cluster.kubeconfig)
        .expect("kubectl is installed")
        .args(["delete", "secret", "etcd-trust"])
        .output()
        .expect("kubectl runs");
    assert!(output.status.success(), "{}", text(&output));
    assert_etcd_trust(cluster);
}

#[test]
fn one_local_cluster_through_restarts_repairs_reboots_and_a_restore() {
    let cluster = LocalCluster::up();
    a_second_up_changes_nothing(&cluster);
    killed_daemons_come_back_with_objects_pod_ips_and_service_traffic_intact(&cluster);
    up_repairs_a_lost_supervisor_and_a_deleted_netns(&cluster);
    etcd_asks_for_certificates_and_the_agents_may_read_pods_but_no_secrets(&cluster);
    up_after_down_keep_data_brings_back_objects_and_pod_ips(&cluster);
    backup_down_restore_brings_back_objects_service_addresses_and_traffic(&cluster);
    drop(cluster);
    assert!(
        !Path::new(DATA_DIR).exists(),
        "plain `down` left {DATA_DIR}"
    );
}

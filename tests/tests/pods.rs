//! End to end: pods bound to a node (spec.nodeName set, written straight
//! to etcd as the API server stores them) run by that node's real
//! skiff-agent with `--run-pods`: addresses, restarts, CrashLoopBackOff,
//! probes, graceful deletion, logs on the kubelet port, the Node object and
//! its Lease. skiff-control runs only where the kubelet API is called: its
//! CA and client certificate are what the agent serves.
//!
//! The agents run with a 1 s first CrashLoopBackOff delay and 1 s
//! heartbeats (`run_pods_args`); the kubelet's are 10 s.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use skiff_tests::{
    EndpointSpec, Node, PortSpec, Testbed, bound_pod, endpoint_slice, endpoint_slice_key, service,
    service_key,
};

const TIMEOUT: Duration = Duration::from_secs(20);
/// `cargo xtask images`' echo server image, which the agents import.
const ECHO_IMAGE: &str = "skiff/echo";

fn pod_key(name: &str) -> String {
    format!("/registry/pods/default/{name}")
}

/// `skiff-echo serve` on TCP 8080 (HTTP GET answers 200 with its name).
fn echo_container(name: &str) -> Value {
    json!({
        "name": "echo",
        "image": ECHO_IMAGE,
        "command": ["skiff-echo"],
        "args": ["serve", "--name", name, "--tcp", "8080"],
    })
}

/// A container running `script` with the busybox image's `sh`.
fn shell(name: &str, script: &str) -> Value {
    json!({ "name": name, "image": "skiff/busybox", "command": ["sh", "-c", script] })
}

/// Polls the object at `key` until `test` passes; panics with the last
/// version seen after `TIMEOUT`.
fn wait_for(testbed: &Testbed, key: &str, what: &str, test: impl Fn(&Value) -> bool) -> Value {
    testbed.wait_for_stored(key, what, TIMEOUT, test)
}

fn container_status(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]
}

fn condition(pod: &Value, kind: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .map(|c| c["status"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

fn running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running" && container_status(pod)["state"]["running"].is_object()
}

fn restarts(pod: &Value) -> i64 {
    container_status(pod)["restartCount"].as_i64().unwrap_or(0)
}

fn container_cgroup(node: &Node, pod: &str, container: &str) -> PathBuf {
    node.cgroup_dir()
        .join("skiff-pods")
        .join(format!("default.{pod}"))
        .join(container)
}

fn pids(cgroup: &Path) -> Vec<i32> {
    std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// `curl` from the node's netns (as the kubelet reaches pods).
fn curl(node: &Node, url: &str) -> Option<String> {
    let out = node
        .command("curl")
        .args(["-s", "--max-time", "2", url])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `curl` of the node agent's kubelet API `path`, from the node's netns,
/// with the API server's client certificate (the only one it serves).
fn kubelet_curl(testbed: &Testbed, node: &Node, path: &str) -> Option<String> {
    let out = kubelet_curl_for(testbed, node, path, 2);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// As [`kubelet_curl`], for at most `seconds`, whatever curl says.
fn kubelet_curl_for(
    testbed: &Testbed,
    node: &Node,
    path: &str,
    seconds: u32,
) -> std::process::Output {
    let [cert, key] = testbed.kubelet_client_identity();
    let url = format!("https://{}:10250{path}", node.ip());
    node.command("curl")
        .args(["-s", "-k", "--max-time", &seconds.to_string(), "--cert"])
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg(url)
        .output()
        .unwrap()
}

/// Waits for the agent to delete the pod's key; returns how long it took.
fn wait_gone(testbed: &Testbed, key: &str) -> Duration {
    let started = Instant::now();
    while testbed.store().get(key).unwrap().is_some() {
        assert!(started.elapsed() < TIMEOUT, "{key} was not removed");
        thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

#[test]
fn a_pod_runs_restarts_serves_logs_and_is_deleted_gracefully() {
    let mut testbed = Testbed::start_running_pods(1).unwrap();
    // Its cluster CA is the one the kubelet API serves to.
    testbed.start_control(&[]).unwrap();
    let node = testbed.cluster().node(1).clone();

    // The node registers itself and renews its lease.
    let node_object = wait_for(&testbed, "/registry/minions/node1", "the Node", |n| {
        condition(n, "Ready") == "True"
    });
    assert_eq!(node_object["kind"], "Node");
    assert_eq!(node_object["spec"]["podCIDR"], "10.244.1.0/24");
    let kubelet = &node_object["status"]["daemonEndpoints"]["kubeletEndpoint"];
    assert_eq!(kubelet["Port"], 10250);
    assert_eq!(
        node_object["status"]["addresses"][0]["address"],
        node.ip().to_string()
    );
    let lease_key = "/registry/leases/kube-node-lease/node1";
    let lease = wait_for(&testbed, lease_key, "the Lease", |_| true);
    let renewed = lease["spec"]["renewTime"].clone();
    wait_for(&testbed, lease_key, "a renewal", |l| {
        l["spec"]["renewTime"] != renewed
    });

    let mut spec = json!({ "containers": [echo_container("web")] });
    spec["containers"][0]["readinessProbe"] = json!({
        "tcpSocket": { "port": 8080 }, "periodSeconds": 1
    });
    spec["containers"][0]["ports"] = json!([{ "name": "http", "containerPort": 8080 }]);
    spec["containers"][0]["startupProbe"] = json!({
        "httpGet": { "path": "/", "port": "http" }, "periodSeconds": 1
    });
    testbed
        .store()
        .put(&pod_key("web"), &bound_pod("web", spec))
        .unwrap();
    let web = wait_for(&testbed, &pod_key("web"), "web to be ready", |p| {
        running(p) && condition(p, "Ready") == "True"
    });
    let ip = web["status"]["podIP"].as_str().unwrap().to_owned();
    assert!(ip.starts_with("10.244.1."), "{ip}");
    assert_eq!(container_status(&web)["image"], ECHO_IMAGE);
    let image_id = container_status(&web)["imageID"].as_str().unwrap();
    assert!(
        image_id.starts_with("docker.io/skiff/echo@sha256:"),
        "{image_id}"
    );
    assert_eq!(
        container_status(&web)["containerID"],
        "runc://default_web_echo"
    );
    assert_eq!(
        curl(&node, &format!("http://{ip}:8080/")).as_deref(),
        Some("web\n")
    );
    let netns = format!("{}-default.web", node.netns());
    assert!(netns_exists(&netns));

    // Logs, as `kubectl logs` gets them through the API server.
    let logs_url = "/containerLogs/default/web/echo";
    let logs = kubelet_curl(&testbed, &node, logs_url).unwrap();
    assert!(logs.contains("ready"), "{logs:?}");
    assert_eq!(
        kubelet_curl(&testbed, &node, &format!("{logs_url}?tailLines=1")).as_deref(),
        Some("ready\n")
    );

    // Killing the process restarts it.
    let cgroup = container_cgroup(&node, "web", "echo");
    let before = pids(&cgroup);
    assert!(!before.is_empty());
    for pid in &before {
        // SAFETY: kill(2) of the pod's own process.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let restarted = wait_for(&testbed, &pod_key("web"), "a restart", |p| {
        restarts(p) == 1 && running(p) && condition(p, "Ready") == "True"
    });
    assert_eq!(
        container_status(&restarted)["lastState"]["terminated"]["exitCode"],
        137
    );
    assert_ne!(pids(&cgroup), before);
    assert_eq!(
        curl(&node, &format!("http://{ip}:8080/")).as_deref(),
        Some("web\n")
    );
    assert!(
        kubelet_curl(&testbed, &node, &format!("{logs_url}?previous=true"))
            .unwrap()
            .contains("ready")
    );

    // A restarted agent adopts the running pod instead of restarting it,
    // and leaves the pod bridge as it was: setting its MAC again would
    // flush the node's neighbour entries for the running pods.
    let pid = pids(&cgroup);
    let mut neighbour_events = node
        .command("ip")
        .args(["monitor", "neigh"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    testbed.kill_agent(1);
    testbed.start_agent(1).unwrap();
    thread::sleep(Duration::from_secs(2));
    assert_eq!(
        pids(&cgroup),
        pid,
        "the agent restart must not restart the pod"
    );
    neighbour_events.kill().unwrap();
    let events = neighbour_events.wait_with_output().unwrap();
    let events = String::from_utf8_lossy(&events.stdout);
    let flushed = format!("Deleted {ip} ");
    assert!(
        !events.lines().any(|e| e.starts_with(&flushed)),
        "the restart flushed the node's neighbour entry for the pod: {events}"
    );
    let adopted = testbed.store().get(&pod_key("web")).unwrap().unwrap();
    assert_eq!(restarts(&adopted), 1);
    let started = |p: &Value| container_status(p)["state"]["running"]["startedAt"].clone();
    assert_eq!(started(&adopted), started(&restarted));

    // Graceful deletion, as the API server marks it: SIGTERM (skiff-echo
    // exits on it at once), then the agent deletes the key.
    let mut deleting = adopted;
    deleting["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
    deleting["metadata"]["deletionGracePeriodSeconds"] = json!(30);
    testbed.store().put(&pod_key("web"), &deleting).unwrap();
    assert!(
        wait_gone(&testbed, &pod_key("web")) < Duration::from_secs(10),
        "SIGTERM should end it well before the grace period"
    );
    assert!(!netns_exists(&netns), "the pod's netns must go");
    assert!(!cgroup.exists(), "the pod's cgroup must go");
    assert!(kubelet_curl(&testbed, &node, logs_url).is_none_or(|body| !body.contains("ready")));

    // A stopped agent stops heartbeating.
    testbed.kill_agent(1);
    thread::sleep(Duration::from_millis(1500));
    let frozen = testbed.store().get(lease_key).unwrap().unwrap();
    thread::sleep(Duration::from_secs(3));
    let later = testbed.store().get(lease_key).unwrap().unwrap();
    assert_eq!(frozen["spec"]["renewTime"], later["spec"]["renewTime"]);
}

#[test]
fn a_failing_command_backs_off_longer_each_time() {
    let mut testbed = Testbed::start_running_pods(1).unwrap();
    testbed.start_control(&[]).unwrap();
    let spec = json!({
        "restartPolicy": "Always",
        "containers": [shell("fail", "echo failing; exit 1")],
    });
    testbed
        .store()
        .put(&pod_key("crash"), &bound_pod("crash", spec))
        .unwrap();
    // Back-offs of 1, 2 and 4 s: the third restart comes about 7 s in.
    let mut seen = Vec::new();
    let mut restarted_at = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while restarted_at.len() < 3 {
        assert!(Instant::now() < deadline, "saw {seen:?}");
        let pod = testbed.store().get(&pod_key("crash")).unwrap().unwrap();
        let status = container_status(&pod);
        if let Some(message) = status["state"]["waiting"]["message"].as_str()
            && status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && !seen.contains(&message.to_owned())
        {
            seen.push(message.to_owned());
            assert_eq!(status["lastState"]["terminated"]["exitCode"], 1);
        }
        if restarts(&pod) as usize > restarted_at.len() {
            restarted_at.push(Instant::now());
        }
        thread::sleep(Duration::from_millis(50));
    }
    let delays: Vec<&str> = seen
        .iter()
        .filter_map(|m| m.strip_prefix("back-off ")?.split(' ').next())
        .collect();
    assert_eq!(delays[..3], ["1s", "2s", "4s"], "{seen:?}");
    let first = restarted_at[1] - restarted_at[0];
    let second = restarted_at[2] - restarted_at[1];
    assert!(
        second > first + Duration::from_millis(1000),
        "{first:?} then {second:?}"
    );
    let pod = testbed.store().get(&pod_key("crash")).unwrap().unwrap();
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(condition(&pod, "Ready"), "False");
}

#[test]
fn probes_set_readiness_and_restart_and_termination_escalates_to_sigkill() {
    let mut testbed = Testbed::start_running_pods(1).unwrap();
    testbed.start_control(&[]).unwrap();
    let node = testbed.cluster().node(1).clone();
    // The probe looks for a file in the container, which the test makes
    // and removes there.
    let flag = "/tmp/ready";
    let touch = |argv: &[&str]| {
        let out = testbed
            .exec_in_container(1, ("default", "probed"), "echo", argv)
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    let mut spec = json!({
        "terminationGracePeriodSeconds": 2,
        "containers": [echo_container("probed")],
    });
    spec["containers"][0]["readinessProbe"] = json!({
        "exec": { "command": ["test", "-e", flag] },
        "periodSeconds": 1,
        "failureThreshold": 1,
    });
    testbed
        .store()
        .put(&pod_key("probed"), &bound_pod("probed", spec))
        .unwrap();
    let ready = |want: &'static str| move |p: &Value| running(p) && condition(p, "Ready") == want;
    wait_for(&testbed, &pod_key("probed"), "not ready", ready("False"));
    touch(&["touch", flag]);
    wait_for(&testbed, &pod_key("probed"), "ready", ready("True"));
    touch(&["rm", flag]);
    let out = wait_for(
        &testbed,
        &pod_key("probed"),
        "out of endpoints",
        ready("False"),
    );
    assert_eq!(container_status(&out)["ready"], false);
    touch(&["touch", flag]);
    wait_for(&testbed, &pod_key("probed"), "back in", ready("True"));

    // A failing liveness probe (nothing listens on 9999) restarts the
    // container: SIGTERM, which skiff-echo dies of (exit code 128 + 15).
    let mut spec = json!({ "containers": [echo_container("unlive")] });
    spec["containers"][0]["livenessProbe"] = json!({
        "httpGet": { "path": "/healthz", "port": 9999 },
        "periodSeconds": 1,
        "failureThreshold": 2,
    });
    testbed
        .store()
        .put(&pod_key("unlive"), &bound_pod("unlive", spec))
        .unwrap();
    let killed = wait_for(&testbed, &pod_key("unlive"), "a liveness restart", |p| {
        restarts(p) >= 1
    });
    let last = &container_status(&killed)["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 143, "{killed:#?}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("liveness probe failed")
    );

    // A process that ignores SIGTERM is killed after the grace period.
    let stubborn = json!({
        "terminationGracePeriodSeconds": 2,
        "containers": [shell("stubborn", "trap '' TERM; while true; do sleep 0.1; done")],
    });
    testbed
        .store()
        .put(&pod_key("stubborn"), &bound_pod("stubborn", stubborn))
        .unwrap();
    let mut pod = wait_for(&testbed, &pod_key("stubborn"), "stubborn running", running);
    pod["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
    pod["metadata"]["deletionGracePeriodSeconds"] = json!(2);
    testbed.store().put(&pod_key("stubborn"), &pod).unwrap();
    let took = wait_gone(&testbed, &pod_key("stubborn"));
    assert!(
        took >= Duration::from_secs(2),
        "SIGKILL came before the grace period: {took:?}"
    );
    assert!(!container_cgroup(&node, "stubborn", "stubborn").exists());
}

#[test]
fn env_comes_from_configmaps_secrets_fields_and_services_whose_cluster_ip_works() {
    let mut testbed = Testbed::start_running_pods(1).unwrap();
    testbed.start_control(&[]).unwrap();
    let node = testbed.cluster().node(1).clone();
    let store = testbed.store();
    let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "settings", "namespace": "default" },
        "data": { "COLOR": "blue", "SIZE": "xl" } });
    store
        .put("/registry/configmaps/default/settings", &cm)
        .unwrap();
    // "hunter2", base64 as the API server stores Secret data.
    let secret = json!({ "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "creds", "namespace": "default" },
        "data": { "PASSWORD": "aHVudGVyMg==" } });
    store
        .put("/registry/secrets/default/creds", &secret)
        .unwrap();
    let http = PortSpec {
        name: "http",
        protocol: "TCP",
        port: 80,
        target_port: 8080,
    };
    let vip = Ipv4Addr::new(10, 96, 0, 10);
    store
        .put(
            &service_key("default", "web"),
            &service("default", "web", vip, std::slice::from_ref(&http)),
        )
        .unwrap();

    let spec = json!({ "containers": [echo_container("web")] });
    store.put(&pod_key("web"), &bound_pod("web", spec)).unwrap();
    let web = wait_for(&testbed, &pod_key("web"), "web running", running);
    let web_ip: Ipv4Addr = web["status"]["podIP"].as_str().unwrap().parse().unwrap();
    let slice = endpoint_slice(
        "default",
        "web-1",
        "web",
        &[http],
        &[EndpointSpec::ready(web_ip, "node1")],
    );
    store
        .put(&endpoint_slice_key("default", "web-1"), &slice)
        .unwrap();

    // The client connects to the Service by its variables, as a pod does.
    let script = "env; for i in $(seq 50); do \
        printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 1 $WEB_SERVICE_HOST $WEB_SERVICE_PORT && break; \
        sleep 0.2; done; \
        sleep 1000";
    let mut client = shell("client", script);
    client["envFrom"] = json!([{ "configMapRef": { "name": "settings" }, "prefix": "CM_" }]);
    client["env"] = json!([
        { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "PASSWORD" } } },
        { "name": "MY_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
        { "name": "GREETING", "value": "$(CM_COLOR) sky" },
    ]);
    store
        .put(
            &pod_key("client"),
            &bound_pod("client", json!({ "containers": [client] })),
        )
        .unwrap();
    let client = wait_for(&testbed, &pod_key("client"), "client running", running);
    let client_ip = client["status"]["podIP"].as_str().unwrap().to_owned();
    let url = "/containerLogs/default/client/client";
    let deadline = Instant::now() + TIMEOUT;
    let logs = loop {
        let logs = kubelet_curl(&testbed, &node, url).unwrap_or_default();
        if logs.lines().any(|l| l == "web") || Instant::now() > deadline {
            break logs;
        }
        thread::sleep(Duration::from_millis(200));
    };
    for line in [
        "CM_COLOR=blue",
        "CM_SIZE=xl",
        "PASSWORD=hunter2",
        &format!("MY_IP={client_ip}"),
        "GREETING=blue sky",
        "WEB_SERVICE_HOST=10.96.0.10",
        "WEB_SERVICE_PORT=80",
        "WEB_SERVICE_PORT_HTTP=80",
        "web",
    ] {
        assert!(
            logs.lines().any(|l| l == line),
            "no {line:?} in the client's log:\n{logs}"
        );
    }

    // Following the log streams what is there and then waits for more.
    let out = kubelet_curl_for(
        &testbed,
        &node,
        &format!("{url}?follow=true&tailLines=1"),
        1,
    );
    assert_eq!(
        out.status.code(),
        Some(28),
        "follow must keep the stream open"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web\n");

    // ... and ends once the container has ended for good.
    let once = json!({
        "restartPolicy": "Never",
        "containers": [shell("once", "echo one; sleep 1; echo two")],
    });
    store
        .put(&pod_key("once"), &bound_pod("once", once))
        .unwrap();
    wait_for(&testbed, &pod_key("once"), "once running", running);
    let url = "/containerLogs/default/once/once?follow=true";
    let out = kubelet_curl_for(&testbed, &node, url, 10);
    assert!(out.status.success(), "the stream must end: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");
    let done = wait_for(&testbed, &pod_key("once"), "once done", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(
        container_status(&done)["state"]["terminated"]["reason"],
        "Completed"
    );
}

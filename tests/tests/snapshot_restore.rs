//! Fault test (d), disaster recovery: a cluster with a Deployment behind a
//! ClusterIP and a NodePort Service is saved with `skiff-control snapshot
//! save`, torn down entirely (etcd, skiff-control, agents, namespaces and
//! data), and restored with `skiff-control snapshot restore` into a fresh
//! cluster with new agents. The objects come back with their uids, the
//! Services with their ClusterIPs and NodePorts, the pods run again on the
//! new agents, and traffic flows through both Services. A Service created
//! afterwards gets an address and a port no restored Service holds.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::{collections::BTreeMap, process::Command, time::Duration};

use serde_json::Value;
use skiff_tests::{CallResult, Pod, ScratchDir, Testbed, echo_binary, parse_call_output};

const NAMESPACE: &str = "demo";
const TIMEOUT: Duration = Duration::from_secs(90);

/// A Deployment of `skiff-echo serve` (each replica answers with its pod
/// name), a ClusterIP and a NodePort Service for it (both allocated), and
/// a client pod on node1.
fn manifests() -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: {NAMESPACE}
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {NAMESPACE}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: echo
        image: skiff/echo
        command: ["skiff-echo"]
        args: ["serve", "--name", "$(POD_NAME)", "--tcp", "8080"]
        env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        ports:
        - name: http
          containerPort: 8080
        readinessProbe:
          tcpSocket:
            port: 8080
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {NAMESPACE}
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: web-outside
  namespace: {NAMESPACE}
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: {NAMESPACE}
spec:
  nodeName: node1
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: skiff/busybox
    command: ["sleep", "infinity"]
"#
    )
}

fn eventually<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    skiff_tests::eventually(what, TIMEOUT, check)
}

fn items(testbed: &Testbed, args: &[&str]) -> Vec<Value> {
    testbed.kubectl_json(args)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn name(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Each object of these kinds, `kind/namespace/name`, with its uid.
fn objects(testbed: &Testbed) -> BTreeMap<String, String> {
    let kinds = "namespaces,configmaps,deployments,services";
    items(testbed, &["get", kinds, "--all-namespaces"])
        .iter()
        .map(|object| {
            let key = format!(
                "{}/{}/{}",
                object["kind"].as_str().unwrap_or_default(),
                object["metadata"]["namespace"].as_str().unwrap_or_default(),
                name(object)
            );
            (key, object["metadata"]["uid"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// Each Service's ClusterIP and its ports' NodePorts.
fn service_addresses(testbed: &Testbed) -> BTreeMap<String, (String, Vec<u64>)> {
    items(testbed, &["get", "services", "--all-namespaces"])
        .iter()
        .map(|service| {
            let ports = service["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|port| port["nodePort"].as_u64())
                .collect();
            let ip = service["spec"]["clusterIP"].as_str().unwrap().to_owned();
            (name(service), (ip, ports))
        })
        .collect()
}

/// When the pod's container started: a restored pod the new agents run
/// again has a new time.
fn started(pod: &Value) -> Option<String> {
    pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
        .as_str()
        .map(str::to_owned)
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The pods of `demo`, once there are `count`, all ready and none started
/// at a time `before` records for it.
fn wait_for_pods(testbed: &Testbed, count: usize, before: &BTreeMap<String, String>) -> Vec<Value> {
    eventually(&format!("{count} ready pods started anew"), || {
        let pods = items(testbed, &["get", "pods", "-n", NAMESPACE]);
        let fresh = |pod: &Value| {
            started(pod).is_some_and(|at| before.get(&name(pod)).is_none_or(|old| *old != at))
        };
        (pods.len() == count && pods.iter().all(|pod| is_ready(pod) && fresh(pod))).then_some(pods)
    })
}

fn parse(command: &mut Command) -> Vec<CallResult> {
    let output = command.output().expect("skiff-echo runs");
    parse_call_output(&String::from_utf8_lossy(&output.stdout)).expect("call results")
}

/// Calls until every call of a round succeeds and every web replica
/// answered.
fn every_replica_answers(what: &str, pods: &[Value], mut call: impl FnMut() -> Vec<CallResult>) {
    let want: Vec<String> = pods
        .iter()
        .map(name)
        .filter(|name| name.starts_with("web-"))
        .collect();
    eventually(what, || {
        let results = call();
        let answered: Vec<&str> = results.iter().filter_map(CallResult::backend).collect();
        (results.iter().all(CallResult::is_ok) && want.iter().all(|w| answered.contains(&&**w)))
            .then_some(())
    });
}

/// Calls through the ClusterIP from the client pod and through node1's
/// NodePort from outside the cluster.
fn assert_traffic_flows(testbed: &Testbed, pods: &[Value]) {
    let echo = echo_binary().unwrap();
    let addresses = service_addresses(testbed);
    let cluster_ip = format!("{}:80", addresses["web"].0);
    let client = Pod::run_by_agent(testbed.cluster().node(1), NAMESPACE, "client", "client")
        .expect("the client pod's netns");
    every_replica_answers("every replica through the ClusterIP", pods, || {
        parse(
            client
                .command(&echo)
                .args(["call", "tcp", &cluster_ip, "--count", "20"]),
        )
    });
    let node_port = format!(
        "{}:{}",
        testbed.cluster().node(1).ip(),
        addresses["web-outside"].1[0]
    );
    every_replica_answers("every replica through the NodePort", pods, || {
        parse(
            testbed
                .cluster()
                .ext()
                .command(&echo)
                .args(["call", "tcp", &node_port, "--count", "20"]),
        )
    });
}

#[test]
fn a_restored_snapshot_brings_back_objects_addresses_pods_and_traffic() {
    let scratch = ScratchDir::new("snapshot-restore");
    std::fs::create_dir_all(scratch.path()).unwrap();
    let archive = scratch.path().join("backup.tar");

    let (objects_saved, addresses_saved, started_saved) = {
        let mut testbed = Testbed::start_running_pods(2).unwrap();
        testbed.start_control(&[]).unwrap();
        testbed.kubectl_ok(&["apply", "-f", "-"], &manifests());
        let pods = wait_for_pods(&testbed, 3, &BTreeMap::new());
        assert_traffic_flows(&testbed, &pods);
        let report = testbed.save_snapshot(&archive).unwrap();
        assert!(report.starts_with("saved "), "{report}");
        let started: BTreeMap<String, String> = pods
            .iter()
            .map(|pod| (name(pod), started(pod).unwrap()))
            .collect();
        (objects(&testbed), service_addresses(&testbed), started)
        // Dropped here: etcd, skiff-control, the agents, the pods, the
        // namespaces and every data directory go.
    };
    assert!(
        addresses_saved["web-outside"].1.len() == 1,
        "{addresses_saved:?}"
    );

    let mut testbed = Testbed::start_restored(2, &archive).unwrap();
    testbed.start_control(&[]).unwrap();
    assert_eq!(objects(&testbed), objects_saved);
    assert_eq!(service_addresses(&testbed), addresses_saved);
    let pods = wait_for_pods(&testbed, 3, &started_saved);
    assert_traffic_flows(&testbed, &pods);

    // The allocators know the restored Services' addresses and ports.
    testbed.kubectl_ok(
        &["create", "service", "nodeport", "later", "--tcp=81:8080"],
        "",
    );
    let addresses = service_addresses(&testbed);
    let (later_ip, later_ports) = &addresses["later"];
    for (service, (ip, ports)) in &addresses_saved {
        assert_ne!(ip, later_ip, "{service}");
        assert!(
            ports.iter().all(|port| !later_ports.contains(port)),
            "{service}: {ports:?} and later's {later_ports:?}"
        );
    }
}

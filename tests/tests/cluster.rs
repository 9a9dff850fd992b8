//! End to end, every real piece together: etcd, skiff-control (API server,
//! scheduler, controllers), two skiff-agents with `--run-pods`, and the
//! real `kubectl`. A Deployment applied with kubectl is scheduled onto both
//! nodes, run by the agents, and served through a ClusterIP and a NodePort
//! by their eBPF datapath; scaling, logs, readiness, a rolling update,
//! namespace deletion and a node's loss follow.
//!
//! Runs as root; clusters are serialised by the harness's lock. Bringing
//! a cluster up takes most of the time, so one cluster goes through the
//! steps in turn, each starting from an empty namespace; the node's loss,
//! which needs short node timeouts and leaves node2 down, comes last.
use std::{
    collections::BTreeSet,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use skiff_tests::{CallResult, Pod, Testbed, agent_binary, echo_binary, parse_call_output};

const NAMESPACE: &str = "demo";
const NODE_PORT: u16 = 30080;
const TIMEOUT: Duration = Duration::from_secs(60);
/// From an EndpointSlice change in etcd to the agents' maps.
const DATAPATH_BOUND: Duration = Duration::from_secs(2);

/// The namespace, a Deployment of `skiff-echo serve` (each replica
/// answers with its pod name), a ClusterIP and a NodePort Service for it,
/// and a client pod on node1 to connect from, all from the images the
/// agents import (`cargo xtask images`). A
/// replica is ready while it accepts connections and its /tmp/unready does
/// not exist; its preStop hook waits 3 s, so that every node's datapath
/// has dropped it before SIGTERM.
fn manifests() -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {NAMESPACE}
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 5
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
          exec:
            command:
            - sh
            - -c
            - test ! -e /tmp/unready && nc -w 1 127.0.0.1 8080 </dev/null
          periodSeconds: 1
          failureThreshold: 1
        lifecycle:
          preStop:
            sleep:
              seconds: 3
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
    nodePort: {NODE_PORT}
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

/// Makes replica `name`'s readiness probe fail, or pass again, by making
/// or removing /tmp/unready in its container.
fn set_unready(testbed: &Testbed, name: &str, unready: bool) {
    let pod = kubectl_json(testbed, &["get", "pod", name, "-n", NAMESPACE]);
    let node: usize = pod["spec"]["nodeName"]
        .as_str()
        .and_then(|n| n.strip_prefix("node")?.parse().ok())
        .expect("the replica is on a node");
    let argv: &[&str] = match unready {
        true => &["touch", "/tmp/unready"],
        false => &["rm", "/tmp/unready"],
    };
    let out = testbed
        .exec_in_container(node, (NAMESPACE, name), "echo", argv)
        .expect("runc exec runs");
    assert!(out.status.success(), "{argv:?} in {name}: {out:?}");
}

/// Runs kubectl; panics with its stderr if it fails. Returns stdout.
fn kubectl(testbed: &Testbed, args: &[&str]) -> String {
    kubectl_with_input(testbed, args, "")
}

fn kubectl_with_input(testbed: &Testbed, args: &[&str], input: &str) -> String {
    (testbed.run_kubectl(args, input)).unwrap_or_else(|error| panic!("{error}"))
}

fn kubectl_json(testbed: &Testbed, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    serde_json::from_str(&kubectl(testbed, &args)).expect("kubectl prints JSON")
}

/// Polls `check` until it yields a value; panics after `TIMEOUT`.
fn eventually<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    skiff_tests::eventually(what, TIMEOUT, check)
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The web pods once exactly `count` exist and all are ready (none
/// terminating).
fn wait_for_web_pods(testbed: &Testbed, count: usize) -> Vec<Value> {
    eventually(&format!("{count} ready web pods"), || {
        let pods = kubectl_json(testbed, &["get", "pods", "-n", NAMESPACE, "-l", "app=web"]);
        let pods = pods["items"].as_array().cloned().unwrap_or_default();
        (pods.len() == count && pods.iter().all(is_ready)).then_some(pods)
    })
}

fn names(pods: &[Value]) -> BTreeSet<String> {
    pods.iter()
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// The backends that answered `count` calls, once every call succeeds
/// and the answers cover `want`.
fn backends_answering(
    what: &str,
    want: &BTreeSet<String>,
    mut call: impl FnMut() -> Vec<CallResult>,
) -> BTreeSet<String> {
    eventually(what, || {
        let results = call();
        let answered: BTreeSet<String> = results
            .iter()
            .filter_map(CallResult::backend)
            .map(str::to_owned)
            .collect();
        (results.iter().all(CallResult::is_ok) && &answered == want).then_some(answered)
    })
}

fn parse(command: &mut Command) -> Vec<CallResult> {
    let output = command.output().expect("skiff-echo runs");
    parse_call_output(&String::from_utf8_lossy(&output.stdout)).expect("call results")
}

/// The client pod, once its agent runs it on node1: commands run in its
/// netns and cgroup, so the socket load balancer applies.
fn client_pod(testbed: &Testbed) -> Pod {
    eventually("the client pod", || {
        let pod = kubectl_json(testbed, &["get", "pod", "client", "-n", NAMESPACE]);
        (pod["status"]["phase"] == "Running").then_some(())
    });
    Pod::run_by_agent(testbed.cluster().node(1), NAMESPACE, "client", "client").unwrap()
}

/// `<cluster IP>:80` of Service `web`.
fn web_cluster_ip(testbed: &Testbed) -> String {
    let service = kubectl_json(testbed, &["get", "service", "web", "-n", NAMESPACE]);
    format!("{}:80", service["spec"]["clusterIP"].as_str().unwrap())
}

/// The number of ready endpoints in the EndpointSlices of Service `web`,
/// read from etcd.
fn ready_endpoints(testbed: &Testbed) -> usize {
    testbed
        .store()
        .list(&format!("/registry/endpointslices/{NAMESPACE}/"))
        .expect("etcd answers")
        .iter()
        .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "web")
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] == true)
        .count()
}

/// How many backends node `node`'s pinned maps hold for `frontend`
/// (`skiff-agent status`).
fn datapath_backends(testbed: &Testbed, node: usize, frontend: &str) -> Option<usize> {
    let output = Command::new(agent_binary().expect("skiff-agent is built"))
        .arg("status")
        .arg("--bpffs")
        .arg(testbed.cluster().bpffs_dir(node))
        .output()
        .expect("skiff-agent status runs");
    let report = String::from_utf8_lossy(&output.stdout);
    // FRONTEND ID KIND BACKENDS ...
    report
        .lines()
        .find(|line| line.starts_with(frontend))
        .and_then(|line| line.split_whitespace().nth(3)?.parse().ok())
}

/// How long a `kubectl scale` took to reach the datapath.
struct ScaleTimes {
    /// From the EndpointSlice in etcd to the slowest node's maps: the
    /// agents' part, which the test bounds.
    slice_to_datapath: Duration,
    /// From running `kubectl scale` to the slowest node's maps: pods
    /// scheduled, started and probed ready (or deleted), reported only.
    kubectl_to_datapath: Duration,
}

/// Scales the Deployment to `replicas`, and times the slowest node's
/// datapath holding that many backends.
fn scale_and_time(testbed: &Testbed, replicas: usize, frontend: &str) -> ScaleTimes {
    let asked = Instant::now();
    kubectl(
        testbed,
        &[
            "scale",
            "deployment/web",
            "-n",
            NAMESPACE,
            &format!("--replicas={replicas}"),
        ],
    );
    let sliced = eventually(&format!("{replicas} ready endpoints"), || {
        (ready_endpoints(testbed) == replicas).then(Instant::now)
    });
    let slowest = (1..=2)
        .map(|node| {
            eventually(&format!("node{node} to program {replicas}"), || {
                (datapath_backends(testbed, node, frontend) == Some(replicas)).then(Instant::now)
            })
        })
        .max()
        .expect("two nodes");
    ScaleTimes {
        slice_to_datapath: slowest.saturating_duration_since(sliced),
        kubectl_to_datapath: slowest - asked,
    }
}

#[test]
fn one_cluster_through_a_deployment_readiness_a_rollout_and_a_node_loss() {
    let mut testbed = Testbed::start_running_pods(2).unwrap();
    testbed.start_control(&["--leader-elect=false"]).unwrap();
    kubectl_drives_a_deployment_through_scheduler_agents_and_datapath(&testbed);
    readiness_and_a_rolling_update_steer_the_cluster_ip_without_a_client_error(&testbed);
    delete_the_namespace(&testbed);
    a_node_whose_agent_stops_goes_not_ready_and_its_pods_move(&mut testbed);
}

/// Deletes the test's namespace and waits until everything in it, pods
/// and their network namespaces included, is gone.
fn delete_the_namespace(testbed: &Testbed) {
    kubectl(testbed, &["delete", "namespace", NAMESPACE, "--wait=false"]);
    let store = testbed.store();
    eventually("the namespace's contents to go", || {
        let left: Vec<String> = [
            "pods",
            "services/specs",
            "endpointslices",
            "deployments",
            "replicasets",
        ]
        .iter()
        .filter(|kind| {
            !store
                .list(&format!("/registry/{kind}/{NAMESPACE}/"))
                .unwrap()
                .is_empty()
        })
        .map(|kind| kind.to_string())
        .collect();
        let namespace = store
            .get(&format!("/registry/namespaces/{NAMESPACE}"))
            .unwrap();
        (left.is_empty() && namespace.is_none()).then_some(())
    });
    let netns = std::fs::read_dir("/run/netns")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&format!("-{NAMESPACE}.")))
        .collect::<Vec<_>>();
    assert!(netns.is_empty(), "pod netns left: {netns:?}");
}

/// The Deployment is spread over both nodes and served through the
/// ClusterIP and the NodePort; its logs are proxied; scaling reaches the
/// datapath within [`DATAPATH_BOUND`]; deleting the namespace removes
/// everything in it and the frontend.
fn kubectl_drives_a_deployment_through_scheduler_agents_and_datapath(testbed: &Testbed) {
    eventually("both nodes Ready", || {
        let nodes = kubectl_json(testbed, &["get", "nodes"]);
        let ready = nodes["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count();
        (ready == 2).then_some(())
    });

    kubectl_with_input(testbed, &["apply", "-f", "-"], &manifests());
    let pods = wait_for_web_pods(testbed, 3);
    let nodes: BTreeSet<&str> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    assert_eq!(
        nodes,
        BTreeSet::from(["node1", "node2"]),
        "the scheduler spreads the replicas"
    );
    for pod in &pods {
        assert_eq!(pod["status"]["containerStatuses"][0]["image"], "skiff/echo");
    }

    // From a pod the agent runs on node1.
    let client = client_pod(testbed);
    let target = web_cluster_ip(testbed);
    let echo = echo_binary().unwrap();
    let want = names(&pods);
    backends_answering("every replica through the ClusterIP", &want, || {
        parse(
            client
                .command(&echo)
                .args(["call", "tcp", &target, "--count", "30"]),
        )
    });

    // From outside the cluster, through either node's NodePort.
    for node in 1..=2 {
        let node_port = format!("{}:{NODE_PORT}", testbed.cluster().node(node).ip());
        backends_answering("every replica through the NodePort", &want, || {
            parse(
                testbed
                    .cluster()
                    .ext()
                    .command(&echo)
                    .args(["call", "tcp", &node_port, "--count", "30"]),
            )
        });
    }

    // kubectl logs, proxied by skiff-control to the pod's node agent.
    let first = want.iter().next().unwrap();
    let logs = kubectl(testbed, &["logs", "-n", NAMESPACE, first]);
    assert!(logs.lines().any(|l| l == "ready"), "{logs:?}");

    // Scaling: the datapath follows each EndpointSlice change.
    let frontend = format!("{target}/TCP");
    for replicas in [5, 1] {
        let times = scale_and_time(testbed, replicas, &frontend);
        let took = times.slice_to_datapath;
        eprintln!(
            "scale to {replicas}: datapath {took:?} after the EndpointSlice, {:?} after kubectl scale",
            times.kubectl_to_datapath
        );
        assert!(took < DATAPATH_BOUND, "scale to {replicas}: {took:?}");
        let want = names(&wait_for_web_pods(testbed, replicas));
        backends_answering("the scaled replicas", &want, || {
            parse(
                client
                    .command(&echo)
                    .args(["call", "tcp", &target, "--count", "10"]),
            )
        });
    }

    // Deleting the namespace deletes everything in it, pods included.
    delete_the_namespace(testbed);
    eventually("the frontend to leave the datapath", || {
        (1..=2)
            .all(|node| datapath_backends(testbed, node, &frontend).is_none())
            .then_some(())
    });
}

/// The Ready condition's status of every node, by name.
fn node_readiness(testbed: &Testbed) -> Vec<(String, String)> {
    let nodes = kubectl_json(testbed, &["get", "nodes"]);
    nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let ready = n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready")
                .and_then(|c| c["status"].as_str())
                .unwrap_or_default();
            (
                n["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                ready.to_owned(),
            )
        })
        .collect()
}

/// With node2's agent killed, node2 goes NotReady, its replicas move to
/// node1, and the ClusterIP follows. Restarts skiff-control with short node
/// timeouts, so the step does not wait the default 40 s.
fn a_node_whose_agent_stops_goes_not_ready_and_its_pods_move(testbed: &mut Testbed) {
    testbed
        .start_control(&[
            "--leader-elect=false",
            "--node-monitor-grace-period=3s",
            "--pod-eviction-timeout=1s",
        ])
        .unwrap();
    let both_ready = vec![
        ("node1".to_owned(), "True".to_owned()),
        ("node2".to_owned(), "True".to_owned()),
    ];
    eventually("both nodes Ready", || {
        (node_readiness(testbed) == both_ready).then_some(())
    });
    kubectl_with_input(testbed, &["apply", "-f", "-"], &manifests());
    let pods = wait_for_web_pods(testbed, 3);
    assert!(
        pods.iter().any(|p| p["spec"]["nodeName"] == "node2"),
        "a replica on node2"
    );

    testbed.kill_agent(2);
    eventually("node2 NotReady", || {
        node_readiness(testbed)
            .iter()
            .any(|(name, ready)| name == "node2" && ready == "Unknown")
            .then_some(())
    });
    let moved = eventually("all replicas on node1", || {
        let pods = wait_for_web_pods(testbed, 3);
        pods.iter()
            .all(|p| p["spec"]["nodeName"] == "node1")
            .then_some(pods)
    });

    // The ClusterIP follows: only the replacements on node1 answer.
    let client = client_pod(testbed);
    let target = web_cluster_ip(testbed);
    let echo = echo_binary().unwrap();
    backends_answering("the replicas on node1", &names(&moved), || {
        parse(
            client
                .command(&echo)
                .args(["call", "tcp", &target, "--count", "30"]),
        )
    });
}

/// A failing readiness probe takes a replica out of the datapath and back;
/// a rolling update under a client's connects loses none of them.
fn readiness_and_a_rolling_update_steer_the_cluster_ip_without_a_client_error(testbed: &Testbed) {
    kubectl_with_input(testbed, &["apply", "-f", "-"], &manifests());
    let pods = wait_for_web_pods(testbed, 3);
    let client = client_pod(testbed);
    let target = web_cluster_ip(testbed);
    let frontend = format!("{target}/TCP");
    let echo = echo_binary().unwrap();
    let call = |count: &str| {
        parse(
            client
                .command(&echo)
                .args(["call", "tcp", &target, "--count", count]),
        )
    };

    // A failing readiness probe takes the replica out of the EndpointSlice
    // and every node's datapath; passing again brings it back.
    let all = names(&pods);
    let probed = all.iter().next().unwrap().clone();
    let others: BTreeSet<String> = all.iter().filter(|n| **n != probed).cloned().collect();
    for (unready_now, want) in [(true, &others), (false, &all)] {
        set_unready(testbed, &probed, unready_now);
        eventually(&format!("{} ready endpoints", want.len()), || {
            (ready_endpoints(testbed) == want.len()).then_some(())
        });
        eventually("both datapaths to follow", || {
            (1..=2)
                .all(|node| datapath_backends(testbed, node, &frontend) == Some(want.len()))
                .then_some(())
        });
        backends_answering("the ready replicas", want, || call("30"));
    }

    // A rolling update (maxSurge 1, maxUnavailable 0 for 3 replicas) while
    // a client connects through the ClusterIP every 10 ms: each old
    // replica leaves the datapath when its deletion starts, and its
    // preStop hook gives the nodes 3 s before SIGTERM.
    let bridge_macs = || -> Vec<String> {
        let nodes = testbed.cluster().nodes();
        nodes.iter().map(|n| n.pod_bridge_mac().unwrap()).collect()
    };
    let macs_before = bridge_macs();
    let client_loop = testbed
        .call_in_background(
            &client,
            &[
                "tcp",
                &target,
                "--duration-ms",
                "120000",
                "--interval-ms",
                "10",
                "--timeout-ms",
                "2000",
            ],
        )
        .expect("the client loop starts");
    thread::sleep(Duration::from_millis(500));
    kubectl(
        testbed,
        &["set", "env", "deployment/web", "-n", NAMESPACE, "VERSION=2"],
    );
    kubectl(
        testbed,
        &[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            NAMESPACE,
            "--timeout=90s",
        ],
    );
    let updated = eventually("3 ready replicas, none of the old ones", || {
        let pods = wait_for_web_pods(testbed, 3);
        names(&pods).is_disjoint(&all).then_some(pods)
    });
    thread::sleep(Duration::from_millis(500));
    let results = client_loop.stop().expect("the client loop's results");
    let failures: Vec<&CallResult> = results.iter().filter(|r| !r.is_ok()).collect();
    let answered: BTreeSet<String> = results
        .iter()
        .filter_map(CallResult::backend)
        .map(str::to_owned)
        .collect();
    eprintln!(
        "rolling update: {} calls, {} failed, answered by {answered:?}",
        results.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "calls failed during the rollout: {failures:?}"
    );
    assert!(
        !answered.is_disjoint(&all) && names(&updated).is_subset(&answered),
        "the loop ran across the rollout: {answered:?}"
    );
    // Pods' veths came and went on every node's bridge; its MAC, which the
    // pods' neighbour entry for their gateway holds, stayed.
    assert_eq!(bridge_macs(), macs_before, "a pod bridge's MAC changed");
}

//! The harness itself, end to end (run as root): a real cluster is built,
//! used, and must vanish without a trace.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use std::{fs, thread};

use skiff_tests::{
    CONTROL_PLANE_IP, CallResult, Cluster, ClusterSpec, Daemon, DaemonSpec, Etcd, EtcdConfig,
    FailureKind, HarnessError, MachineCheck, Pod, ProcessGuard, cgroup2_root, check_machine,
    parse_call_output, teardown_prefix,
};

const ECHO: &str = env!("CARGO_BIN_EXE_skiff-echo");
const READY: Duration = Duration::from_secs(5);

/// The machine check looks at the whole machine, so tests that create
/// clusters run one at a time: the cluster lock alone would let another
/// test's cluster come and go between one test's baseline and its checks.
static MACHINE: Mutex<()> = Mutex::new(());

fn machine() -> MutexGuard<'static, ()> {
    MACHINE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The machine check must find nothing that was not already wrong before the
/// test (on CI: nothing at all). A shared developer machine may carry someone
/// else's experiment, which is not this test's to judge.
fn assert_machine_clean(check: MachineCheck, baseline: &[String]) {
    let new: Vec<String> = check_machine(check)
        .unwrap()
        .into_iter()
        .filter(|c| !baseline.contains(c))
        .collect();
    assert!(
        new.is_empty(),
        "machine check ({check:?}):\n{}",
        new.join("\n")
    );
}

/// What the machine check already complains about before a test starts.
fn baseline() -> Vec<String> {
    let before = check_machine(MachineCheck::AfterRun).unwrap();
    if !before.is_empty() {
        eprintln!(
            "note: the machine was not clean before this test:\n{}",
            before.join("\n")
        );
    }
    before
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Independent of the library: everything on the machine whose name carries
/// `prefix`, found the way a person would look.
fn traces_of(prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in run(Command::new("ip").args(["netns", "list"])).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if name == prefix || name.starts_with(&format!("{prefix}-")) {
            found.push(format!("netns {name}"));
        }
    }
    for line in run(Command::new("ip").args(["-o", "link", "show"])).lines() {
        let name = line
            .split(": ")
            .nth(1)
            .unwrap_or_default()
            .split('@')
            .next()
            .unwrap_or_default();
        if name.starts_with(&format!("{prefix}-")) {
            found.push(format!("link {name}"));
        }
    }
    for dir in [
        cgroup2_root().unwrap().join(prefix),
        PathBuf::from("/sys/fs/bpf").join(prefix),
    ] {
        if dir.exists() {
            found.push(dir.display().to_string());
        }
    }
    found
}

fn call(cmd: &mut Command) -> Vec<CallResult> {
    parse_call_output(&run(cmd)).unwrap()
}

fn ok(backend: &str, peer: SocketAddr) -> impl Fn(&CallResult) -> bool + '_ {
    move |r| matches!(r, CallResult::Ok { backend: b, peer: p, .. } if b == backend && *p == peer)
}

/// The child's exit status within `timeout`, or None if it still runs.
fn exit_within(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn cgroup_of(pid: u32) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .to_owned()
}

#[test]
fn two_node_cluster_connects_pods_and_nodes_and_leaves_no_trace() {
    let _machine = machine();
    let baseline = baseline();
    let mut cluster = Cluster::create(ClusterSpec::random(2)).unwrap();
    let prefix = cluster.prefix().as_str().to_owned();
    let client = cluster.add_pod(1, "client").unwrap();
    let web = cluster.add_pod(2, "web").unwrap();
    let db = cluster.add_pod(2, "db").unwrap();
    assert_eq!(client.ip(), Ipv4Addr::new(10, 244, 1, 2));
    assert_eq!(
        (web.ip(), db.ip()),
        (Ipv4Addr::new(10, 244, 2, 2), Ipv4Addr::new(10, 244, 2, 3))
    );
    assert_eq!(cluster.node(2).ip(), Ipv4Addr::new(172, 30, 0, 12));
    assert_eq!(
        cluster.bpffs_dir(1),
        PathBuf::from(format!("/sys/fs/bpf/{prefix}/node1"))
    );
    assert!(matches!(
        cluster.add_pod(2, "web"),
        Err(HarnessError::InvalidSpec(_))
    ));

    // Pods across nodes, by IP, TCP and UDP; the server runs as the pod.
    let server = ProcessGuard::spawn_ready(
        web.command(ECHO)
            .args(["serve", "--name", "web", "--tcp", "8080", "--udp", "8081"]),
        "ready",
        READY,
    )
    .unwrap();
    assert_eq!(cgroup_of(server.pid()), format!("/{prefix}/node2/web"));
    let tcp = call(
        client
            .command(ECHO)
            .args(["call", "tcp", "10.244.2.2:8080", "--count", "3"]),
    );
    assert_eq!(tcp.len(), 3);
    assert!(
        tcp.iter()
            .all(ok("web", "10.244.2.2:8080".parse().unwrap())),
        "{tcp:?}"
    );
    let udp = call(
        client
            .command(ECHO)
            .args(["call", "udp", "10.244.2.2:8081"]),
    );
    assert!(
        udp.iter()
            .all(ok("web", "10.244.2.2:8081".parse().unwrap())),
        "{udp:?}"
    );
    // Same node, over cbr0: nothing listens on db, so the kernel refuses.
    let refused = call(web.command(ECHO).args(["call", "tcp", "10.244.2.3:8080"]));
    assert!(
        matches!(
            refused[..],
            [CallResult::Failed {
                kind: FailureKind::Refused,
                ..
            }]
        ),
        "{refused:?}"
    );
    // A ClusterIP nobody translates fails at once on the node's unreachable route.
    let vip =
        call(
            client
                .command(ECHO)
                .args(["call", "tcp", "10.96.0.10:80", "--timeout-ms", "3000"]),
        );
    assert!(
        matches!(vip[..], [CallResult::Failed { kind: FailureKind::Unreachable, elapsed_ms, .. }] if elapsed_ms < 1000),
        "{vip:?}"
    );

    // The outside client reaches every node address. Node commands stay in
    // the caller's cgroup and still see the real /sys/fs/cgroup.
    let mut node_servers = Vec::new();
    for node in cluster.nodes() {
        let mut serve = node.command(ECHO);
        serve.args(["serve", "--name", node.name(), "--tcp", "9000"]);
        let guard = ProcessGuard::spawn_ready(&mut serve, "ready", READY).unwrap();
        assert_eq!(cgroup_of(guard.pid()), cgroup_of(std::process::id()));
        node_servers.push(guard);
        let target = format!("{}:9000", node.ip());
        let calls = call(cluster.ext().command(ECHO).args(["call", "tcp", &target]));
        assert!(
            calls.iter().all(ok(node.name(), target.parse().unwrap())),
            "{calls:?}"
        );
    }
    run(cluster
        .node(1)
        .command("ls")
        .arg(cluster.node(1).cgroup_dir()));

    // The host routes pod addresses to the cluster, and nothing else there.
    let route = run(Command::new("ip").args(["route", "get", "10.244.2.2"]));
    assert!(route.contains(&format!("dev {prefix}-cp")), "{route}");
    cluster.assert_isolated().unwrap();
    // …and it does notice a leak (a host route to an outside address; the
    // node has no route onward, and `ip route get` sends nothing anyway).
    let leak = [
        "-n",
        client.netns(),
        "route",
        "add",
        "1.1.1.1/32",
        "via",
        "10.244.1.1",
    ];
    run(Command::new("ip").args(leak));
    let err = cluster.assert_isolated().unwrap_err();
    run(Command::new("ip").args(["-n", client.netns(), "route", "del", "1.1.1.1/32"]));
    assert!(
        matches!(&err, HarnessError::NotIsolated(m) if m.contains(client.netns()) && m.contains("1.1.1.1")),
        "{err}"
    );
    cluster.assert_isolated().unwrap();
    let node_routes = run(cluster
        .node(1)
        .command("ip")
        .args(["route", "show", "10.96.0.0/12"]));
    assert!(
        node_routes.starts_with("unreachable 10.96.0.0/12"),
        "{node_routes}"
    );
    assert_machine_clean(MachineCheck::DuringRun, &baseline);

    // Something an agent would pin: teardown must remove it.
    fs::create_dir_all(cluster.bpffs_dir(1)).unwrap();
    let server_pid = server.pid();
    drop(cluster);
    assert_eq!(traces_of(&prefix), Vec::<String>::new());
    assert!(
        !Path::new(&format!("/proc/{server_pid}/ns/net")).exists(),
        "the pod's server survived teardown"
    );
    let blackhole = run(Command::new("ip").args(["route", "show", "exact", "10.96.0.0/12"]));
    assert_eq!(
        blackhole.trim(),
        "",
        "the service blackhole outlived the cluster"
    );
    assert_machine_clean(MachineCheck::AfterRun, &baseline);
}

/// Gives `pod`'s port on node1's bridge `address`: a bridge whose address
/// follows its ports' takes the lowest.
fn set_port_address(cluster: &Cluster, pod: &Pod, address: &str) {
    let port = format!("veth{}", pod.ip().octets()[3]);
    run(cluster
        .node(1)
        .command("ip")
        .args(["link", "set", "dev", &port, "address", address]));
}

/// A pod joining a node's bridge leaves the gateway's MAC address alone:
/// the pods that resolved it before still reach other nodes' pods at once.
#[test]
fn a_pod_joining_the_bridge_leaves_the_gateway_address_alone() {
    let _machine = machine();
    let mut cluster = Cluster::create(ClusterSpec::random(2)).unwrap();
    let first = cluster.add_pod(1, "first").unwrap();
    set_port_address(&cluster, &first, "00:00:00:00:00:02");
    let client = cluster.add_pod(1, "client").unwrap();
    let web = cluster.add_pod(2, "web").unwrap();
    let _server = ProcessGuard::spawn_ready(
        web.command(ECHO)
            .args(["serve", "--name", "web", "--tcp", "8080"]),
        "ready",
        READY,
    )
    .unwrap();
    let target = SocketAddr::from((web.ip(), 8080));
    let calls_web = |when: &str| {
        let results = call(
            client
                .command(ECHO)
                .args(["call", "tcp", &target.to_string()]),
        );
        assert!(results.iter().all(ok("web", target)), "{when}: {results:?}");
    };
    calls_web("before another pod joined");
    let joining = cluster.add_pod(1, "joining").unwrap();
    set_port_address(&cluster, &joining, "00:00:00:00:00:01");
    calls_web("after another pod joined");
}

#[test]
fn a_panicking_test_still_tears_down() {
    let _machine = machine();
    let baseline = baseline();
    let mut prefix = None;
    let mut orphans: Vec<Child> = Vec::new();
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut cluster = Cluster::create(ClusterSpec::random(1)).unwrap();
        prefix = Some(cluster.prefix().as_str().to_owned());
        let pod = cluster.add_pod(1, "doomed").unwrap();
        // Neither is guarded: teardown alone must stop them, the pod's by
        // its cgroup, the node's by its netns.
        orphans.push(pod.command("sleep").arg("60").spawn().unwrap());
        orphans.push(cluster.node(1).command("sleep").arg("60").spawn().unwrap());
        panic!("the test fails while the cluster is up");
    }));
    assert!(result.is_err());
    let prefix = prefix.expect("the cluster was created");
    assert_eq!(traces_of(&prefix), Vec::<String>::new());
    for child in &mut orphans {
        let status =
            exit_within(child, Duration::from_secs(2)).expect("teardown kills every process");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
    assert_machine_clean(MachineCheck::AfterRun, &baseline);
}

#[test]
fn persisted_cluster_survives_drop_until_teardown_prefix() {
    let _machine = machine();
    let baseline = baseline();
    let cluster = Cluster::create(ClusterSpec::random(1)).unwrap();
    let prefix = cluster.prefix().clone();
    let fabric = format!("{prefix}-fabric");
    cluster.persist();
    let traces = traces_of(prefix.as_str());
    assert!(traces.contains(&format!("netns {fabric}")), "{traces:?}");

    // The same prefix again is refused, naming the way out.
    let again = Cluster::create(ClusterSpec {
        prefix: prefix.clone(),
        nodes: 1,
    });
    match again {
        Err(HarnessError::Conflict(message)) => {
            assert!(message.contains("cargo xtask down"), "{message}")
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    assert!(teardown_prefix("").is_err() && teardown_prefix("skiffy").is_err());
    let removed = teardown_prefix(prefix.as_str()).unwrap();
    assert!(removed.contains(&format!("netns {fabric}")), "{removed:?}");
    assert!(
        removed.contains(&format!("link {prefix}-cp")),
        "{removed:?}"
    );
    assert_eq!(traces_of(prefix.as_str()), Vec::<String>::new());
    assert_machine_clean(MachineCheck::AfterRun, &baseline);
}

#[test]
fn etcd_answers_and_is_gone_after_drop() {
    let etcd = Etcd::start(&[]).unwrap();
    let endpoint = etcd.local_endpoint();
    let etcdctl = |args: &[&str]| {
        run(Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(&endpoint)
            .args(args))
    };
    assert_eq!(etcdctl(&["put", "/registry/test", "hello"]).trim(), "OK");
    assert_eq!(
        etcdctl(&["get", "--print-value-only", "/registry/test"]).trim(),
        "hello"
    );
    let (pid, port, dir) = (
        etcd.pid(),
        etcd.config().client_port,
        etcd.config().data_dir.clone(),
    );
    assert!(dir.exists());
    drop(etcd);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "etcd still runs"
    );
    assert!(!dir.exists(), "etcd's data outlived it");
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "something still listens on {port}"
    );
}

#[test]
fn detached_etcd_serves_node_netns_and_dies_with_the_cluster() {
    let _machine = machine();
    let baseline = baseline();
    let cluster = Cluster::create(ClusterSpec::random(1)).unwrap();
    let state = std::env::temp_dir().join(format!("{}-state", cluster.prefix()));
    let config = EtcdConfig::on_free_ports(state.join("etcd-data"), &[CONTROL_PLANE_IP]).unwrap();
    let etcd_cgroup = cluster.cgroup_dir().join("etcd");
    let etcd = Etcd::start_detached(
        &config,
        DaemonSpec {
            name: "etcd",
            state_dir: &state,
            cgroup: Some(&etcd_cgroup),
        },
    )
    .unwrap();
    assert_eq!(cgroup_of(etcd.pid()), format!("/{}/etcd", cluster.prefix()));
    assert_eq!(
        config.endpoints(),
        [format!("http://172.30.0.254:{}", config.client_port)]
    );

    // An agent in a node netns reaches etcd on the control-plane address.
    let node = cluster.node(1);
    let etcdctl = |args: &[&str]| {
        let mut cmd = node.command("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(config.endpoints().join(","))
            .args(args);
        run(&mut cmd)
    };
    assert_eq!(etcdctl(&["put", "k", "from-node1"]).trim(), "OK");
    assert_eq!(
        etcdctl(&["get", "--print-value-only", "k"]).trim(),
        "from-node1"
    );

    // A pid-file stop works on its own.
    let sleeper = Daemon::spawn(
        {
            let mut cmd = node.command("sleep");
            cmd.arg("60");
            cmd
        },
        DaemonSpec {
            name: "sleeper",
            state_dir: &state,
            cgroup: None,
        },
    )
    .unwrap();
    assert!(sleeper.is_running());
    assert!(Daemon::stop(&state, "sleeper", Duration::from_secs(2)).unwrap());
    assert!(!sleeper.is_running());
    assert!(!sleeper.pid_file().exists());
    assert!(!Daemon::stop(&state, "sleeper", Duration::from_secs(2)).unwrap());

    // Tearing down the cluster kills etcd through its cgroup.
    drop(cluster);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while etcd.is_running() && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !etcd.is_running(),
        "etcd survived the teardown of its cluster"
    );
    fs::remove_dir_all(&state).unwrap();
    assert_machine_clean(MachineCheck::AfterRun, &baseline);
}

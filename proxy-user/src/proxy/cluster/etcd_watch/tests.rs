//! Unit tests of the pure parts, and tests against a real etcd
//! (`/usr/bin/etcd`, on loopback ports, in a temporary data directory).

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::*;
use crate::proxy::cluster::frontends::{BackendAddr, NodeRef};
use crate::proxy::cluster::records::SERVICE_NAME_LABEL;
use crate::proxy::cluster::state::ClusterState;

#[test]
fn parses_namespace_and_name_from_keys() {
    let parse = |prefix, key: &str| parse_key(prefix, key.as_bytes());
    assert_eq!(
        parse(SERVICES_PREFIX, "/registry/services/specs/default/web"),
        Some(("default".into(), "web".into()))
    );
    assert_eq!(
        parse(
            SLICES_PREFIX,
            "/registry/endpointslices/kube-system/dns-x7k2p"
        ),
        Some(("kube-system".into(), "dns-x7k2p".into()))
    );
    for bad in [
        "/registry/services/specs/default",
        "/registry/services/specs/default/",
        "/registry/services/specs//web",
        "/registry/services/specs/default/web/extra",
        "/registry/services/endpoints/default/web",
        "",
    ] {
        assert_eq!(parse(SERVICES_PREFIX, bad), None, "{bad}");
    }
    assert_eq!(
        parse_key(SERVICES_PREFIX, b"/registry/services/specs/default/\xff"),
        None
    );
}

#[test]
fn prefix_end_bounds_exactly_the_prefix() {
    let end = prefix_end(SERVICES_PREFIX);
    assert_eq!(end, b"/registry/services/specs0");
    assert!(b"/registry/services/specs/zz/zz".as_slice() < end.as_slice());
    assert!(b"/registry/services/specs0".as_slice() >= end.as_slice());
}

#[test]
fn backoff_doubles_to_five_seconds_and_resets() {
    let mut backoff = Backoff::default();
    let delays: Vec<u64> = (0..8)
        .map(|_| backoff.next_delay().as_millis() as u64)
        .collect();
    assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    backoff.reset();
    assert_eq!(backoff.next_delay(), Duration::from_millis(100));
}

#[test]
fn decode_takes_identity_from_key_and_keeps_only_what_it_reads() {
    let value = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "other",
            "managedFields": [{ "manager": "kubectl", "operation": "Apply" }],
        },
        "spec": { "clusterIP": "10.96.0.10" },
    });
    let (name, service): (ServiceRef, ServiceRecord) = decode(
        SERVICES_PREFIX,
        b"/registry/services/specs/default/web",
        value.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(name, svc("web"));
    assert_eq!(
        *service.cluster_ips,
        [std::net::Ipv4Addr::new(10, 96, 0, 10)]
    );
}

#[test]
fn decode_errors_name_the_key() {
    let error = decode::<ServiceRecord>(
        SERVICES_PREFIX,
        b"/registry/services/specs/default/web",
        b"k8s\0protobuf",
    )
    .unwrap_err();
    assert!(matches!(error, DecodeError::Value { .. }));
    assert!(
        error
            .to_string()
            .contains("/registry/services/specs/default/web")
    );

    // A valid object of another kind is not silently taken for a Service.
    let pod = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": {} });
    let error = decode::<ServiceRecord>(
        SERVICES_PREFIX,
        b"/registry/services/specs/default/web",
        pod.to_string().as_bytes(),
    )
    .unwrap_err();
    assert!(matches!(error, DecodeError::Value { .. }));

    let error = decode::<ServiceRecord>(SERVICES_PREFIX, b"/registry/services/specs/web", b"{}")
        .unwrap_err();
    assert!(matches!(error, DecodeError::Key { .. }));
}

#[test]
fn watch_events_become_changes() {
    let value = service_json("web", "10.96.0.10").to_string();
    let upsert = change_of(
        EventType::Put,
        b"/registry/services/specs/default/web",
        value.as_bytes(),
    )
    .unwrap();
    assert!(matches!(upsert, ObjectChange::ServiceUpsert(s, _) if s == svc("web")));

    let delete = change_of(
        EventType::Delete,
        b"/registry/services/specs/default/web",
        b"",
    )
    .unwrap();
    assert!(matches!(delete, ObjectChange::ServiceDelete(r) if r == svc("web")));

    let value = slice_json("web-a", "web", "10.244.1.1").to_string();
    let upsert = change_of(
        EventType::Put,
        b"/registry/endpointslices/default/web-a",
        value.as_bytes(),
    )
    .unwrap();
    assert!(matches!(upsert, ObjectChange::SliceUpsert(..)));

    let delete = change_of(
        EventType::Delete,
        b"/registry/endpointslices/default/web-a",
        b"",
    )
    .unwrap();
    assert!(matches!(
        delete,
        ObjectChange::SliceDelete(slice) if slice == svc("web-a")
    ));

    assert!(change_of(EventType::Delete, b"/registry/endpointslices/web-a", b"").is_err());
}

#[tokio::test]
async fn list_pages_at_one_revision_and_skips_undecodable_values() {
    init_logs();
    let etcd = Etcd::start();
    let mut client = etcd.client().await;
    for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        put_service(&mut client, name, &format!("10.96.0.{}", i + 1)).await;
    }
    client
        .put(
            "/registry/services/specs/default/garbage",
            "k8s\0not json",
            None,
        )
        .await
        .unwrap();
    put_slice(&mut client, "a-1", "a", "10.244.1.1").await;
    put_slice(&mut client, "b-1", "b", "10.244.1.2").await;
    // Neither under a watched prefix nor mistaken for one.
    client
        .put("/registry/services/endpoints/default/a", "{}", None)
        .await
        .unwrap();
    let latest = client
        .get("x", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();

    // Page size 2 makes the lists take several pages.
    let mut kv = client.kv_client();
    let snapshot = list(&mut kv, 2).await.unwrap();
    assert_eq!(snapshot.revision, latest);
    let names: Vec<_> = snapshot
        .services
        .iter()
        .map(|(name, _)| name.name.to_string())
        .collect();
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    let slices: Vec<_> = snapshot
        .slices
        .iter()
        .map(|(name, _)| name.name.to_string())
        .collect();
    assert_eq!(slices, ["a-1", "b-1"]);

    // A later page is read at the revision the first one pinned: objects
    // written since are not in it, deleted ones still are.
    put_service(&mut client, "f", "10.96.0.6").await;
    client
        .delete("/registry/services/specs/default/a", None)
        .await
        .unwrap();
    let (pinned, revision): (Vec<(ServiceRef, ServiceRecord)>, i64) =
        list_prefix(&mut kv, SERVICES_PREFIX, latest, 2)
            .await
            .unwrap();
    assert_eq!(revision, latest);
    assert_eq!(pinned.len(), 5);
    assert_eq!(pinned[0].0, svc("a"));
}

#[tokio::test]
async fn watch_from_compacted_revision_is_reported_as_compacted() {
    init_logs();
    let etcd = Etcd::start();
    let mut client = etcd.client().await;
    let before = put_service(&mut client, "web", "10.96.0.10").await;
    put_service(&mut client, "web", "10.96.0.11").await;
    let latest = put_service(&mut client, "web", "10.96.0.12").await;
    client.compact(latest, None).await.unwrap();

    let (tx, _rx) = mpsc::channel(8);
    let mut backoff = Backoff::default();
    backoff.next_delay();
    let mut stream = start_watch(&client, before).await.unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        follow(&mut stream, before + 1, &tx, &mut backoff),
    )
    .await
    .expect("a compacted watch must end at once");
    match outcome {
        Err(WatchError::Compacted {
            start,
            compact_revision,
        }) => {
            assert_eq!(start, before + 1);
            assert_eq!(compact_revision, latest);
        }
        Err(other) => panic!("expected a compaction, got {other}"),
        Ok(ConsumerGone) => panic!("expected a compaction, got a closed consumer"),
    }
}

/// The whole loop: etcd unreachable at start, list, live changes, then an
/// outage during which objects change and the history is compacted, so the
/// watch cannot resume: the agent must get a `Resync` holding exactly what
/// etcd holds now.
#[tokio::test]
async fn run_lists_watches_and_resyncs_after_outage_with_compaction() {
    init_logs();
    let etcd = Etcd::start();
    let mut client = etcd.client().await;
    put_service(&mut client, "web", "10.96.0.10").await;
    put_slice(&mut client, "web-a", "web", "10.244.1.1").await;

    // The agent reaches etcd through a gate the test can shut.
    let gate = Gate::new(etcd.client_addr()).await;
    let (tx, mut rx) = mpsc::channel(16);
    let runner = tokio::spawn(run(vec![gate.url()], tx));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        rx.is_empty(),
        "nothing can be listed while etcd is unreachable"
    );
    gate.set_open(true);

    let mut state = ClusterState::default();
    let mut resyncs = 0;
    let first = next_event(&mut rx).await;
    assert!(matches!(first, ClusterEvent::Resync { .. }));
    apply(&mut state, first, &mut resyncs);
    assert_eq!(backend_ips(&state, "web"), ["10.244.1.1"]);

    // Live changes arrive as changes, not re-lists.
    put_slice(&mut client, "web-b", "web", "10.244.1.2").await;
    put_service(&mut client, "api", "10.96.0.11").await;
    client
        .delete("/registry/endpointslices/default/web-a", None)
        .await
        .unwrap();
    wait_until(&mut rx, &mut state, &mut resyncs, |state| {
        backend_ips(state, "web") == ["10.244.1.2"]
            && state
                .desired(
                    &svc("api"),
                    NodeRef {
                        name: "node1",
                        ip: None,
                    },
                )
                .len()
                == 1
    })
    .await;
    assert_eq!(resyncs, 1);

    // Outage: the watch breaks; meanwhile objects change and the history
    // the watch would resume from is compacted away.
    gate.set_open(false);
    tokio::time::sleep(Duration::from_millis(100)).await;
    client
        .delete("/registry/services/specs/default/api", None)
        .await
        .unwrap();
    put_service(&mut client, "db", "10.96.0.12").await;
    put_slice(&mut client, "db-a", "db", "10.244.2.1").await;
    let latest = put_slice(&mut client, "web-b", "web", "10.244.1.3").await;
    client.compact(latest, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    gate.set_open(true);

    let resync = loop {
        match next_event(&mut rx).await {
            event @ ClusterEvent::Resync { .. } => break event,
            event => apply(&mut state, event, &mut resyncs),
        }
    };
    let ClusterEvent::Resync {
        services,
        slices,
        revision,
    } = &resync
    else {
        unreachable!()
    };
    assert!(*revision >= latest);
    let names: BTreeSet<_> = services
        .iter()
        .map(|(name, _)| name.name.to_string())
        .collect();
    assert_eq!(names, BTreeSet::from(["db".into(), "web".into()]));
    let slice_names: BTreeSet<_> = slices
        .iter()
        .map(|(name, _)| name.name.to_string())
        .collect();
    assert_eq!(slice_names, BTreeSet::from(["db-a".into(), "web-b".into()]));

    apply(&mut state, resync, &mut resyncs);
    assert_eq!(resyncs, 2);
    assert_eq!(
        state.services().cloned().collect::<Vec<_>>(),
        [svc("db"), svc("web")]
    );
    assert_eq!(backend_ips(&state, "web"), ["10.244.1.3"]);
    assert_eq!(backend_ips(&state, "db"), ["10.244.2.1"]);

    // The watch is live again after the re-list.
    client
        .delete("/registry/services/specs/default/db", None)
        .await
        .unwrap();
    wait_until(&mut rx, &mut state, &mut resyncs, |state| {
        state.services().count() == 1
    })
    .await;

    // Dropping the receiver stops the loop.
    drop(rx);
    tokio::time::timeout(Duration::from_secs(2), runner)
        .await
        .expect("run must return once its receiver is gone")
        .unwrap();
}

// ---- helpers ----

/// Shows the module's logs in a failing test's output.
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("skiff_agent=debug")
        .with_test_writer()
        .try_init();
}

fn svc(name: &str) -> ServiceRef {
    ServiceRef {
        namespace: "default".into(),
        name: name.into(),
    }
}

fn service_json(name: &str, cluster_ip: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "namespace": "default", "name": name },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ports": [{ "port": 80, "protocol": "TCP", "targetPort": 8080 }],
        },
    })
}

fn slice_json(name: &str, service: &str, ip: &str) -> serde_json::Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": "default",
            "name": name,
            "labels": { SERVICE_NAME_LABEL: service },
        },
        "addressType": "IPv4",
        "ports": [{ "port": 8080, "protocol": "TCP" }],
        "endpoints": [{ "addresses": [ip], "conditions": { "ready": true } }],
    })
}

/// Writes a Service; returns the revision of the write.
async fn put_service(client: &mut Client, name: &str, cluster_ip: &str) -> i64 {
    let key = format!("{SERVICES_PREFIX}default/{name}");
    let value = service_json(name, cluster_ip).to_string();
    let response = client.put(key, value, None).await.unwrap();
    response.header().unwrap().revision()
}

/// Writes an EndpointSlice; returns the revision of the write.
async fn put_slice(client: &mut Client, name: &str, service: &str, ip: &str) -> i64 {
    let key = format!("{SLICES_PREFIX}default/{name}");
    let value = slice_json(name, service, ip).to_string();
    let response = client.put(key, value, None).await.unwrap();
    response.header().unwrap().revision()
}

fn apply(state: &mut ClusterState, event: ClusterEvent, resyncs: &mut usize) {
    match event {
        ClusterEvent::Resync {
            services, slices, ..
        } => {
            *resyncs += 1;
            state.replace_all(services, slices);
        }
        ClusterEvent::Changes { changes, .. } => {
            for change in changes {
                state.apply(change);
            }
        }
    }
}

async fn next_event(rx: &mut mpsc::Receiver<ClusterEvent>) -> ClusterEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no cluster event within 5 s")
        .expect("run stopped")
}

async fn wait_until(
    rx: &mut mpsc::Receiver<ClusterEvent>,
    state: &mut ClusterState,
    resyncs: &mut usize,
    done: impl Fn(&ClusterState) -> bool,
) {
    while !done(state) {
        let event = next_event(rx).await;
        apply(state, event, resyncs);
    }
}

fn backend_ips(state: &ClusterState, name: &str) -> Vec<String> {
    state
        .desired(
            &svc(name),
            NodeRef {
                name: "node1",
                ip: None,
            },
        )
        .iter()
        .flat_map(|d| &d.backends)
        .map(|BackendAddr { ip, .. }| ip.to_string())
        .collect()
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A single-member etcd on loopback ports, killed and its data removed on
/// drop (also when a test panics).
struct Etcd {
    child: Child,
    dir: PathBuf,
    client_port: u16,
}

impl Etcd {
    fn start() -> Self {
        let client_port = free_port();
        let peer_port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "skiff-etcd-test-{}-{client_port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let log = File::create(dir.join("etcd.log")).unwrap();
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let child = Command::new("/usr/bin/etcd")
            .arg("--name=default")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/etcd");
        Self {
            child,
            dir,
            client_port,
        }
    }

    fn client_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    /// A client, once etcd serves requests.
    async fn client(&self) -> Client {
        let url = format!("http://{}", self.client_addr());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut client) = Client::connect([&url], None).await
                && client.get("ready", None).await.is_ok()
            {
                return client;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not start; see {:?}",
                self.dir
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback TCP forwarder to etcd that the test opens and shuts. Shut, it
/// drops new connections at once and cuts the open ones: etcd looks down to
/// the agent while the test keeps writing to it directly.
struct Gate {
    port: u16,
    open: watch::Sender<bool>,
    acceptor: JoinHandle<()>,
}

impl Gate {
    async fn new(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (open, open_rx) = watch::channel(false);
        let acceptor = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*open_rx.borrow() {
                    continue;
                }
                let mut open_rx = open_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = open_rx.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Self {
            port,
            open,
            acceptor,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set_open(&self, open: bool) {
        self.open.send_replace(open);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

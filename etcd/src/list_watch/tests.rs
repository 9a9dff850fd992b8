//! The list-then-watch against a real etcd, with a decoder of Services and
//! EndpointSlices as plain JSON.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::*;
use crate::keys::{ENDPOINT_SLICES, SERVICES, collection_prefix, object_key, parse_namespaced};
use crate::testing::etcd;

/// (kind base, namespace, name).
type Name = (&'static str, String, String);

/// Services and EndpointSlices, each as (its JSON, the revision it was
/// read at); any other JSON object is refused.
struct Objects;

impl Decoder for Objects {
    type Key = Name;
    type Value = (Value, i64);

    fn key(&self, key: &[u8]) -> Option<Name> {
        [SERVICES, ENDPOINT_SLICES].into_iter().find_map(|base| {
            parse_namespaced(base, key).map(|(namespace, name)| (base, namespace, name))
        })
    }

    fn value(
        &self,
        key: &Name,
        value: &[u8],
        mod_revision: i64,
    ) -> Result<(Value, i64), serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Kind {
            kind: String,
        }
        let kind: Kind = serde_json::from_slice(value)?;
        let expected = if key.0 == SERVICES {
            "Service"
        } else {
            "EndpointSlice"
        };
        if kind.kind != expected {
            return Err(serde::de::Error::custom(format!(
                "a {}, not a {expected}",
                kind.kind
            )));
        }
        Ok((serde_json::from_slice(value)?, mod_revision))
    }
}

type TestEvent = Event<Name, (Value, i64)>;

fn objects(endpoints: Vec<String>) -> ListWatch<Objects> {
    ListWatch::new(
        endpoints,
        vec![
            collection_prefix(SERVICES, None),
            collection_prefix(ENDPOINT_SLICES, None),
        ],
        Objects,
    )
}

fn service(name: &str) -> Name {
    (SERVICES, "default".into(), name.into())
}

fn slice(name: &str) -> Name {
    (ENDPOINT_SLICES, "default".into(), name.into())
}

/// Writes a Service; returns the revision of the write.
async fn put_service(kv: &Kv, name: &str, cluster_ip: &str) -> i64 {
    let value = json!({ "kind": "Service", "spec": { "clusterIP": cluster_ip } });
    put(kv, &object_key(SERVICES, Some("default"), name), &value).await
}

/// Writes an EndpointSlice; returns the revision of the write.
async fn put_slice(kv: &Kv, name: &str, ip: &str) -> i64 {
    let value = json!({ "kind": "EndpointSlice", "endpoints": [{ "addresses": [ip] }] });
    put(
        kv,
        &object_key(ENDPOINT_SLICES, Some("default"), name),
        &value,
    )
    .await
}

async fn put(kv: &Kv, key: &str, value: &Value) -> i64 {
    let response = kv.client().put(key, value.to_string(), None).await.unwrap();
    response.header().unwrap().revision()
}

async fn delete(kv: &Kv, key: &str) {
    kv.client().delete(key, None).await.unwrap();
}

#[tokio::test]
async fn list_pages_at_one_revision_and_skips_undecodable_values() {
    let (_etcd, kv) = etcd().await;
    for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        put_service(&kv, name, &format!("10.96.0.{}", i + 1)).await;
    }
    kv.client()
        .put(
            "/registry/services/specs/default/garbage",
            "k8s\0not json",
            None,
        )
        .await
        .unwrap();
    // A valid object of another kind is not taken for a Service.
    put(
        &kv,
        "/registry/services/specs/default/pod",
        &json!({ "kind": "Pod" }),
    )
    .await;
    // Not an object's key.
    put(
        &kv,
        "/registry/services/specs/default",
        &json!({ "kind": "Service" }),
    )
    .await;
    put_slice(&kv, "a-1", "10.244.1.1").await;
    put_slice(&kv, "b-1", "10.244.1.2").await;
    // Neither under a watched prefix nor mistaken for one.
    put(&kv, "/registry/services/endpoints/default/a", &json!({})).await;
    let latest = kv.revision().await.unwrap();

    // Page size 2 makes the lists take several pages.
    let watch = objects(vec![]).with_page_size(2);
    let (listed, revision) = watch.list(&kv).await.unwrap();
    assert_eq!(revision, latest);
    let names: Vec<Name> = listed.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(
        names,
        [
            service("a"),
            service("b"),
            service("c"),
            service("d"),
            service("e"),
            slice("a-1"),
            slice("b-1")
        ]
    );
    assert_eq!(listed[0].1.0["spec"]["clusterIP"], "10.96.0.1");
    assert!(listed.iter().all(|(_, (_, revision))| *revision <= latest));
}

#[tokio::test]
async fn watch_from_compacted_revision_is_reported_as_compacted() {
    let (_etcd, kv) = etcd().await;
    let before = put_service(&kv, "web", "10.96.0.10").await;
    put_service(&kv, "web", "10.96.0.11").await;
    let latest = put_service(&kv, "web", "10.96.0.12").await;
    kv.client().compact(latest, None).await.unwrap();

    let (tx, _rx) = mpsc::channel::<TestEvent>(8);
    let mut backoff = Backoff::default();
    backoff.next_delay();
    let watch = objects(vec![]);
    let mut stream = watch.start_watch(&kv, before).await.unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        watch.follow(&mut stream, before + 1, &tx, &mut backoff),
    )
    .await
    .expect("a compacted watch must end at once");
    match outcome {
        Err(SessionError::Compacted {
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
/// outage during which objects change and the history is compacted, so
/// the watch cannot resume: the consumer must get a `Resync` holding
/// exactly what etcd holds now.
#[tokio::test]
async fn run_lists_watches_and_resyncs_after_outage_with_compaction() {
    let (etcd, kv) = etcd().await;
    put_service(&kv, "web", "10.96.0.10").await;
    put_slice(&kv, "web-a", "10.244.1.1").await;

    // The watch reaches etcd through a gate the test can shut.
    let gate = Gate::new(etcd.client_addr()).await;
    let (tx, mut rx) = mpsc::channel::<TestEvent>(16);
    let runner = tokio::spawn(objects(vec![gate.url()]).run(tx));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        rx.is_empty(),
        "nothing can be listed while etcd is unreachable"
    );
    gate.set_open(true);

    let mut state = State::default();
    let first = next_event(&mut rx).await;
    assert!(matches!(first, Event::Resync { .. }));
    state.apply(first);
    assert_eq!(state.names(), [service("web"), slice("web-a")]);

    // Live changes arrive as changes, not re-lists.
    put_slice(&kv, "web-b", "10.244.1.2").await;
    put_service(&kv, "api", "10.96.0.11").await;
    delete(&kv, "/registry/endpointslices/default/web-a").await;
    state
        .wait_until(&mut rx, |state| {
            state.names() == [service("api"), service("web"), slice("web-b")]
        })
        .await;
    assert_eq!(state.resyncs, 1);

    // Outage: the watch breaks; meanwhile objects change and the history
    // the watch would resume from is compacted away.
    gate.set_open(false);
    tokio::time::sleep(Duration::from_millis(100)).await;
    delete(&kv, "/registry/services/specs/default/api").await;
    put_service(&kv, "db", "10.96.0.12").await;
    put_slice(&kv, "db-a", "10.244.2.1").await;
    let latest = put_slice(&kv, "web-b", "10.244.1.3").await;
    kv.client().compact(latest, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    gate.set_open(true);

    let resync = loop {
        match next_event(&mut rx).await {
            event @ Event::Resync { .. } => break event,
            event => state.apply(event),
        }
    };
    let Event::Resync { objects, revision } = &resync else {
        unreachable!()
    };
    assert!(*revision >= latest);
    let names: Vec<Name> = objects.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(
        names,
        [service("db"), service("web"), slice("db-a"), slice("web-b")]
    );
    state.apply(resync);
    assert_eq!(state.resyncs, 2);
    assert_eq!(
        state.objects[&slice("web-b")].0["endpoints"][0]["addresses"][0],
        "10.244.1.3"
    );
    assert_eq!(state.objects[&slice("web-b")].1, latest);

    // The watch is live again after the re-list.
    delete(&kv, "/registry/services/specs/default/db").await;
    state
        .wait_until(&mut rx, |state| !state.objects.contains_key(&service("db")))
        .await;

    // Dropping the receiver stops the loop.
    drop(rx);
    tokio::time::timeout(Duration::from_secs(2), runner)
        .await
        .expect("run must return once its receiver is gone")
        .unwrap();
}

/// What a consumer following the events holds.
#[derive(Default)]
struct State {
    objects: BTreeMap<Name, (Value, i64)>,
    resyncs: usize,
}

impl State {
    fn apply(&mut self, event: TestEvent) {
        match event {
            Event::Resync { objects, .. } => {
                self.resyncs += 1;
                self.objects = objects.into_iter().collect();
            }
            Event::Changes { changes, .. } => {
                for change in changes {
                    match change {
                        Change::Put(name, value) => self.objects.insert(name, value),
                        Change::Delete(name) => self.objects.remove(&name),
                    };
                }
            }
        }
    }

    /// The names held, Services first (the key order of their bases).
    fn names(&self) -> Vec<Name> {
        let mut names: Vec<Name> = self.objects.keys().cloned().collect();
        names.sort_by_key(|(base, ..)| *base != SERVICES);
        names
    }

    async fn wait_until(
        &mut self,
        rx: &mut mpsc::Receiver<TestEvent>,
        done: impl Fn(&State) -> bool,
    ) {
        while !done(self) {
            let event = next_event(rx).await;
            self.apply(event);
        }
    }
}

async fn next_event(rx: &mut mpsc::Receiver<TestEvent>) -> TestEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no event within 5 s")
        .expect("run stopped")
}

/// A loopback TCP forwarder to etcd that the test opens and shuts. Shut,
/// it drops new connections at once and cuts the open ones: etcd looks
/// down to the watch while the test keeps writing to it directly.
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

/// A quiet prefix still reports how far its watch has got, through a
/// shared connection.
#[tokio::test]
async fn progress_reports_reach_a_quiet_prefix() {
    let (_etcd, kv) = etcd().await;
    put_service(&kv, "web", "10.96.0.10").await;
    let (tx, mut rx) = mpsc::channel::<TestEvent>(16);
    let watch = ListWatch::shared(
        kv.clone(),
        vec![collection_prefix(ENDPOINT_SLICES, None)],
        Objects,
    )
    .with_progress(Duration::from_millis(50));
    let runner = tokio::spawn(watch.run(tx));
    let Event::Resync { objects, revision } = next_event(&mut rx).await else {
        panic!("the first event is a Resync")
    };
    assert!(objects.is_empty());

    // Writes elsewhere move etcd's revision on; the watch says it has seen
    // everything up to there, with no changes of its own.
    let latest = put_service(&kv, "api", "10.96.0.11").await;
    assert!(latest > revision);
    loop {
        match next_event(&mut rx).await {
            Event::Changes {
                changes, revision, ..
            } => {
                assert!(changes.is_empty(), "nothing changed under the prefix");
                if revision >= latest {
                    break;
                }
            }
            Event::Resync { .. } => panic!("no re-list without trouble"),
        }
    }
    drop(rx);
    runner.await.unwrap();
}

/// etcd stops answering (SIGSTOP) with the watch's connection still up:
/// only the connection's keep-alives can tell. Every list-then-watch (the
/// agent's Service, EndpointSlice and pod watches alike) connects with
/// them, so the dead watch is dropped and, once etcd answers again, the
/// consumer gets a fresh list instead of a watch that silently stalled.
#[tokio::test]
async fn a_stopped_etcd_is_noticed_by_keep_alives_and_re_listed() {
    let (etcd, kv) = etcd().await;
    put_service(&kv, "web", "10.96.0.10").await;
    let (tx, mut rx) = mpsc::channel::<TestEvent>(16);
    let _runner = tokio::spawn(objects(vec![etcd.local_endpoint()]).run(tx));
    assert!(matches!(next_event(&mut rx).await, Event::Resync { .. }));

    let signal = |signal: &str| {
        let status = std::process::Command::new("kill")
            .args([signal, &etcd.process().pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    };
    signal("-STOP");
    // The outage: longer than a keep-alive's interval plus its timeout
    // (10 s + 5 s, see `Kv::connect`).
    tokio::time::sleep(Duration::from_secs(17)).await;
    signal("-CONT");
    let resynced = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Event::Resync { .. } = rx.recv().await.expect("run stopped") {
                return;
            }
        }
    });
    resynced
        .await
        .expect("the stalled watch was replaced by a fresh list");
}

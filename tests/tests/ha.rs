//! The HA control plane under faults, with real processes: three members,
//! each an etcd member (client and peer TLS) and a skiff-control that
//! joined the first with its token.
//!
//! (a) A client makes 1000 ConfigMap creates while the etcd leader, found
//! through the maintenance API's Status, is SIGKILLed: every create that
//! got a 2xx is stored afterwards, none is stored twice, and the API
//! answers again once etcd has a new leader.
//!
//! The API's one address, the NodePort in front of the API servers (whose
//! EndpointSlice the servers keep from their etcd leases), answers again
//! after one skiff-control is SIGKILLed, and the killed server leaves the
//! Service's endpoints.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};
use skiff_api_client::{ApiClient, Connection};
use skiff_tests::{Cluster, ClusterSpec, ControlPlanes};

const TOKEN: &str = "ha-test-token";
const CREATES: usize = 1000;
/// The create after which the etcd leader is killed.
const KILL_AT: usize = 200;
/// A create that has not answered by then counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const LABEL: &str = "skiff-ha-test";
const PATH: &str = "/api/v1/namespaces/default/configmaps";

/// An HA control plane of three members on a one-node cluster, whose API
/// servers accept [`TOKEN`].
fn start() -> (ControlPlanes, Cluster) {
    let mut cluster = Cluster::create(ClusterSpec::random(1)).unwrap();
    let dir = std::env::temp_dir().join(format!("{}-ha", cluster.prefix().as_str()));
    fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens.csv");
    fs::write(&tokens, format!("{TOKEN},admin,1,\"system:masters\"\n")).unwrap();
    let token_flag = format!("--token-file={}", tokens.display());
    let planes = ControlPlanes::start(&mut cluster, 3, &dir, &[&token_flag]).unwrap();
    (planes, cluster)
}

/// A client of the API's one address.
fn client(planes: &ControlPlanes) -> ApiClient {
    ApiClient::new(planes.front(), TOKEN, &planes.ca_pem().unwrap()).unwrap()
}

/// One create of ConfigMap number `seq` (a generated name, the number in
/// its data): the stored name on a 2xx, `None` on anything else.
async fn create(
    connection: &mut Option<Connection>,
    api: &ApiClient,
    seq: usize,
) -> Option<String> {
    let body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "generateName": "ha-", "labels": { LABEL: "a" } },
        "data": { "seq": seq.to_string() },
    })
    .to_string();
    let attempt = async {
        if connection.is_none() {
            *connection = Some(api.connect().await.ok()?);
        }
        let open = connection.as_mut()?;
        let created = open
            .call(
                Method::POST,
                PATH,
                Some(body.as_bytes()),
                &[StatusCode::CREATED],
            )
            .await;
        match created {
            Ok(bytes) => serde_json::from_slice::<Value>(&bytes).ok()?["metadata"]["name"]
                .as_str()
                .map(str::to_owned),
            Err(_) => None,
        }
    };
    let created = tokio::time::timeout(CALL_TIMEOUT, attempt)
        .await
        .ok()
        .flatten();
    if created.is_none() {
        // The connection may be broken or busy with the lost call.
        *connection = None;
    }
    created
}

/// Every ConfigMap of the test, by name, with its `seq`.
async fn stored(api: &ApiClient) -> BTreeMap<String, usize> {
    let mut connection = api.connect().await.unwrap();
    let path = format!("{PATH}?labelSelector={LABEL}%3Da");
    let bytes = connection
        .call(Method::GET, &path, None, &[StatusCode::OK])
        .await
        .unwrap();
    let list: Value = serde_json::from_slice(&bytes).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let name = item["metadata"]["name"].as_str().unwrap().to_owned();
            let seq = item["data"]["seq"].as_str().unwrap().parse().unwrap();
            (name, seq)
        })
        .collect()
}

#[test]
fn creates_survive_the_etcd_leader_being_killed() {
    let (mut planes, _cluster) = start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = client(&planes);

    let mut connection = None;
    let mut acknowledged: BTreeMap<usize, String> = BTreeMap::new();
    let mut failed = Vec::new();
    let mut killed = 0;
    let mut first_failure = None;
    let mut last_failure = None;
    for seq in 0..CREATES {
        if seq == KILL_AT {
            let leader = planes.etcd_leader().unwrap();
            eprintln!("killing etcd member cp{leader}, the leader, at create {seq}");
            planes.kill_etcd(leader);
            killed = leader;
        }
        let started = Instant::now();
        match runtime.block_on(create(&mut connection, &api, seq)) {
            Some(name) => {
                acknowledged.insert(seq, name);
            }
            None => {
                failed.push(seq);
                first_failure.get_or_insert(started);
                last_failure = Some(Instant::now());
            }
        }
    }
    let window = first_failure
        .zip(last_failure)
        .map(|(first, last)| last - first);
    eprintln!(
        "{} of {CREATES} creates acknowledged; failed: {failed:?}; error window {window:?}",
        acknowledged.len()
    );

    let stored = runtime.block_on(stored(&api));
    let mut seen: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (name, seq) in &stored {
        seen.entry(*seq).or_default().push(name);
    }
    let twice: Vec<_> = seen.iter().filter(|(_, names)| names.len() > 1).collect();
    assert!(twice.is_empty(), "created more than once: {twice:?}");
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|(_, name)| !stored.contains_key(*name))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not stored: {lost:?}\n{}",
        planes.logs(killed)
    );
    // What failed is not acknowledged; it may or may not have been stored.
    let unacknowledged: BTreeSet<usize> = failed.iter().copied().collect();
    assert!(
        seen.keys()
            .all(|seq| acknowledged.contains_key(seq) || unacknowledged.contains(seq)),
        "a stored ConfigMap carries a seq no create sent"
    );
    // Two members of three are a quorum: after the election every create
    // succeeds again.
    let tail = CREATES - 100..CREATES;
    assert!(
        tail.clone().all(|seq| acknowledged.contains_key(&seq)),
        "creates {tail:?} failed after the election: {failed:?}\n{}",
        planes.logs(killed)
    );
}

/// The API servers the front Service's EndpointSlice lists.
async fn fronted(api: &ApiClient) -> Option<usize> {
    let mut connection = api.connect().await.ok()?;
    let path = "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices/skiff-apiserver";
    let bytes = connection
        .call(Method::GET, path, None, &[StatusCode::OK])
        .await
        .ok()?;
    let slice: Value = serde_json::from_slice(&bytes).ok()?;
    Some(slice["endpoints"].as_array()?.len())
}

/// One GET on a connection of its own, so that each is balanced anew.
async fn answers(api: &ApiClient) -> bool {
    let attempt = async {
        let mut connection = api.connect().await.ok()?;
        connection
            .call(
                Method::GET,
                "/api/v1/namespaces/default",
                None,
                &[StatusCode::OK],
            )
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(CALL_TIMEOUT, attempt).await,
        Ok(Some(_))
    )
}

#[test]
fn the_api_answers_at_one_address_when_an_api_server_is_killed() {
    let (mut planes, _cluster) = start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = client(&planes);
    skiff_tests::eventually(
        "three API servers behind the one address",
        Duration::from_secs(20),
        || (runtime.block_on(fronted(&api)) == Some(3)).then_some(()),
    );

    planes.kill_control(1);
    let killed_at = Instant::now();
    // Until 50 calls in a row answer: the killed server has left the
    // Service (its lease expired) and the datapath balances over the two.
    let mut in_a_row = 0;
    let mut failures = 0;
    let mut last_failure = None;
    while in_a_row < 50 {
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "the API did not answer steadily at {} after an API server was killed: \
             {failures} failures\n{}",
            planes.front(),
            planes.logs(2)
        );
        if runtime.block_on(answers(&api)) {
            in_a_row += 1;
        } else {
            in_a_row = 0;
            failures += 1;
            last_failure = Some(killed_at.elapsed());
        }
    }
    eprintln!("{failures} failed calls; the last {last_failure:?} after the kill");
    assert_eq!(runtime.block_on(fronted(&api)), Some(2));
}

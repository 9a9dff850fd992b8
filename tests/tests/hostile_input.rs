//! What a hostile or broken client can send a real skiff-control on etcd,
//! and what it gets back: kube-apiserver's answers (413 for bodies and
//! patches too large for it or for etcd, 400 for numbers out of range, 429
//! past the in-flight limits), idle connections closed by the TLS and
//! header timeouts, a cap on open connections, a corrupt value in etcd
//! skipped by lists and watches, unlimited lists read from etcd in pages
//! and still complete, and the admin's kubeconfig and keys private. After
//! each, the server still answers a normal request.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::{Value, json};
use skiff_api_client::ApiClient;
use skiff_tests::Testbed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const TOKEN: &str = "hostile-input-admin-token";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
/// How long anything the server is asked to do here may take.
const PATIENCE: Duration = Duration::from_secs(20);
const MAX_CONNECTIONS: usize = 8;

/// The server, as this test reaches it.
struct Server {
    addr: SocketAddr,
    ca_pem: Vec<u8>,
    api: ApiClient,
}

impl Server {
    /// One request on a fresh connection (the 1 s header timeout closes
    /// idle ones): its status, `Retry-After` and JSON body.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        content_type: Option<&str>,
    ) -> (StatusCode, Option<String>, Value) {
        let mut connection = self.api.connect().await.unwrap();
        let response = match content_type {
            None => connection.send(method, path, body).await.unwrap(),
            Some(content_type) => connection
                .send_with_content_type(method, path, body, content_type)
                .await
                .unwrap(),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .map(|value| value.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, retry_after, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.request(Method::GET, path, None, None).await;
        (status, body)
    }

    /// The server still serves: the default namespace reads back.
    async fn still_serves(&self) {
        let (status, body) = self.get("/api/v1/namespaces/default").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["metadata"]["name"], "default");
    }

    /// A TLS connection, for requests no well-behaved client sends.
    async fn tls(&self) -> TlsStream<tokio::net::TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(&self.ca_pem).unwrap())
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::IpAddress(self.addr.ip().into()), tcp)
            .await
            .unwrap()
    }
}

fn configmap(name: &str, data: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name },
        "data": { "value": data },
    }))
    .unwrap()
}

/// Reads until the peer closes the connection (or resets it): the close
/// must come within [`PATIENCE`].
fn wait_for_close(mut stream: TcpStream) -> Instant {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Instant::now(),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("the server left an idle connection open past {PATIENCE:?}")
            }
            Err(_) => return Instant::now(),
        }
    }
}

#[test]
fn hostile_requests_get_kube_apiserver_answers_and_the_server_keeps_serving() {
    let mut testbed = Testbed::start(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    fs::write(&tokens, format!("{TOKEN},admin,1,\"system:masters\"\n")).unwrap();
    let max_connections = format!("--max-connections={MAX_CONNECTIONS}");
    let token_file = format!("--token-file={}", tokens.display());
    let kubeconfig = testbed
        .start_control(&[
            "--leader-elect=false",
            &token_file,
            "--tls-handshake-timeout=1s",
            "--header-read-timeout=1s",
            &max_connections,
            "--max-mutating-requests-inflight=1",
            "--max-long-running-requests-per-user=2",
        ])
        .unwrap();

    // The admin's kubeconfig and every private key: the owner's only.
    let data_dir = kubeconfig.parent().unwrap();
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&kubeconfig), 0o600, "{}", kubeconfig.display());
    let mut keys = 0;
    for entry in fs::read_dir(data_dir.join("pki")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "key") {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
            keys += 1;
        }
    }
    assert!(
        keys >= 4,
        "the PKI has its CA, serving, admin and kubelet-client keys"
    );

    let document: Value = serde_json::from_slice(&fs::read(&kubeconfig).unwrap()).unwrap();
    let url = document["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap();
    let addr: SocketAddr = url.strip_prefix("https://").unwrap().parse().unwrap();
    let ca_pem = fs::read(data_dir.join("pki/ca.crt")).unwrap();
    let server = Server {
        addr,
        api: ApiClient::new(addr, TOKEN, &ca_pem).unwrap(),
        ca_pem,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        server.still_serves().await;
        bodies_too_large(&server).await;
        json_patches_too_large(&server).await;
        numbers_out_of_range(&server).await;
        requests_in_flight(&server).await;
        idle_connections(&server).await;
        unlimited_lists_are_complete(&server).await;
        corrupt_values(&server, &testbed).await;
    });
}

async fn bodies_too_large(server: &Server) {
    // Past the API's 3 MiB: kube-apiserver's 413.
    let huge = configmap("huge", &"x".repeat(4 << 20));
    let (status, _, body) = server
        .request(Method::POST, CONFIGMAPS, Some(&huge), None)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["reason"], "RequestEntityTooLarge");
    assert_eq!(
        body["message"],
        "Request entity too large: limit is 3145728"
    );
    server.still_serves().await;

    // Under 3 MiB but past etcd's 1.5 MiB request limit: 413 as well.
    let large = configmap("large", &"x".repeat(2 << 20));
    let (status, _, body) = server
        .request(Method::POST, CONFIGMAPS, Some(&large), None)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["reason"], "RequestEntityTooLarge");
    let (status, _) = server.get(&format!("{CONFIGMAPS}/large")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
    server.still_serves().await;
}

async fn json_patches_too_large(server: &Server) {
    let (status, _, body) = server
        .request(
            Method::POST,
            CONFIGMAPS,
            Some(&configmap("patched", &"x".repeat(1 << 20))),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let path = format!("{CONFIGMAPS}/patched");
    let patch_type = Some("application/json-patch+json");

    let tests = vec![json!({"op": "test", "path": "/kind", "value": "ConfigMap"}); 10_001];
    let patch = serde_json::to_vec(&tests).unwrap();
    let (status, _, body) = server
        .request(Method::PATCH, &path, Some(&patch), patch_type)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(
        body["message"],
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
    );

    // Each copy adds 1 MiB: the third passes the 3 MiB a document may have.
    let copies = json!([
        {"op": "copy", "from": "/data/value", "path": "/data/b"},
        {"op": "copy", "from": "/data/value", "path": "/data/c"},
        {"op": "copy", "from": "/data/value", "path": "/data/d"},
    ]);
    let patch = serde_json::to_vec(&copies).unwrap();
    let (status, _, body) = server
        .request(Method::PATCH, &path, Some(&patch), patch_type)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["reason"], "RequestEntityTooLarge");
    let (status, stored) = server.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["data"].as_object().unwrap().len(), 1, "unchanged");
    server.still_serves().await;
}

async fn numbers_out_of_range(server: &Server) {
    for query in [
        "limit=99999999999999999999",
        "limit=-1",
        "limit=1e3",
        "watch=true&timeoutSeconds=-5",
        "watch=true&resourceVersion=9223372036854775807",
        "watch=true&resourceVersion=-3",
    ] {
        let (status, body) = server.get(&format!("{CONFIGMAPS}?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["reason"], "BadRequest", "{query}");
        assert!(
            body["message"].as_str().unwrap().starts_with("invalid "),
            "{query}: {body}"
        );
    }
    for grace in ["1e99", "99999999999999999999"] {
        let (status, _, body) = server
            .request(
                Method::DELETE,
                &format!("{CONFIGMAPS}/patched?gracePeriodSeconds={grace}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{grace}: {body}");
        assert_eq!(
            body["message"],
            format!("invalid gracePeriodSeconds value \"{grace}\"")
        );
    }
    let (status, body) = server
        .get("/api/v1/namespaces/default/pods/none/log?tailLines=-1")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["message"], "invalid tailLines value \"-1\"");
    server.still_serves().await;
}

async fn requests_in_flight(server: &Server) {
    // A create whose body never comes holds the one mutating slot.
    let mut held = server.tls().await;
    let head = format!(
        "POST {CONFIGMAPS} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
        server.addr
    );
    held.write_all(head.as_bytes()).await.unwrap();
    held.flush().await.unwrap();
    let create = configmap("in-flight", "v");
    // The held request reaches the server asynchronously: poll until the
    // limit shows.
    let deadline = Instant::now() + PATIENCE;
    let (status, retry_after, body) = loop {
        let answer = server
            .request(Method::POST, CONFIGMAPS, Some(&create), None)
            .await;
        if answer.0 == StatusCode::TOO_MANY_REQUESTS || Instant::now() > deadline {
            break answer;
        }
        assert_eq!(answer.0, StatusCode::CREATED, "{}", answer.2);
        server
            .request(
                Method::DELETE,
                &format!("{CONFIGMAPS}/in-flight"),
                None,
                None,
            )
            .await;
    };
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["reason"], "TooManyRequests");
    assert_eq!(
        body["message"],
        "Too many requests, please try again later."
    );
    // Reads have their own limit.
    server.still_serves().await;
    drop(held);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, _, body) = server
            .request(Method::POST, CONFIGMAPS, Some(&create), None)
            .await;
        if status == StatusCode::CREATED {
            break;
        }
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(Instant::now() < deadline, "the slot was never given back");
    }

    // Watches do not count toward the in-flight limits, but one user may
    // hold only two open.
    let watch = format!("{CONFIGMAPS}?watch=true&timeoutSeconds=60");
    let mut watches = Vec::new();
    for _ in 0..2 {
        let mut connection = server.api.connect().await.unwrap();
        let response = connection.send(Method::GET, &watch, None).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        watches.push((connection, response));
    }
    let (status, _, body) = server.request(Method::GET, &watch, None, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    server.still_serves().await;
    let (status, _, body) = server
        .request(
            Method::DELETE,
            &format!("{CONFIGMAPS}/in-flight"),
            None,
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "writes go on beside the watches: {body}"
    );
    watches.clear();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut connection = server.api.connect().await.unwrap();
        let response = connection.send(Method::GET, &watch, None).await.unwrap();
        if response.status() == StatusCode::OK {
            break;
        }
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            Instant::now() < deadline,
            "closed watches were never counted off"
        );
    }
}

async fn idle_connections(server: &Server) {
    // A connection that never starts TLS is closed after the handshake
    // timeout; so is one that sends half a request head.
    wait_for_close(TcpStream::connect(server.addr).unwrap());
    let mut half = server.tls().await;
    half.write_all(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    half.flush().await.unwrap();
    let closed = tokio::time::timeout(PATIENCE, async {
        let mut buffer = [0u8; 256];
        while let Ok(1..) = half.read(&mut buffer).await {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "a half-sent request head kept its connection past {PATIENCE:?}"
    );
    server.still_serves().await;

    // With every connection slot taken by idle connections, a new one is
    // only served after the timeout has closed one of them.
    let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    let closers: Vec<_> = idle
        .into_iter()
        .map(|stream| std::thread::spawn(move || wait_for_close(stream)))
        .collect();
    // The idle connections are accepted first, in the order they came: a
    // request on a new connection waits behind them.
    let served = tokio::time::timeout(PATIENCE, server.still_serves())
        .await
        .map(|()| Instant::now())
        .expect("a connection waiting for a slot is served once one frees");
    let first_close = closers
        .into_iter()
        .map(|closer| closer.join().unwrap())
        .min()
        .unwrap();
    assert!(
        first_close <= served,
        "the new connection was served while all {MAX_CONNECTIONS} slots were held"
    );
}

async fn unlimited_lists_are_complete(server: &Server) {
    // More objects than one etcd page (500): a list without limit still
    // returns them all, and a huge limit is no error.
    let count = 620;
    let mut connection = server.api.connect().await.unwrap();
    for index in 0..count {
        let body = configmap(&format!("many-{index:04}"), "v");
        // The node's agent writes its Lease through the API server too: when
        // it holds the one mutating slot the answer is 429 with
        // Retry-After, which a client honours.
        loop {
            let answer = connection
                .call(
                    Method::POST,
                    CONFIGMAPS,
                    Some(&body),
                    &[StatusCode::CREATED, StatusCode::TOO_MANY_REQUESTS],
                )
                .await
                .unwrap();
            let answer: Value = serde_json::from_slice(&answer).unwrap();
            if answer["kind"] == "ConfigMap" {
                break;
            }
            assert_eq!(answer["reason"], "TooManyRequests", "{answer}");
            tokio::time::sleep(Duration::from_secs(1)).await;
            // This server's 1 s header timeout has closed the connection
            // while it sat idle through the Retry-After wait.
            connection = server.api.connect().await.unwrap();
        }
    }
    drop(connection);
    let many = |list: &Value| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|item| {
                item["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("many-")
            })
            .count()
    };
    let (status, list) = server.get(CONFIGMAPS).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(many(&list), count);
    assert!(list["metadata"].get("continue").is_none());
    let (status, list) = server.get(&format!("{CONFIGMAPS}?limit=1000000")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(many(&list), count);
    let (status, list) = server.get(&format!("{CONFIGMAPS}?limit=100")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 100);
    assert!(list["metadata"]["continue"].is_string());
}

async fn corrupt_values(server: &Server, testbed: &Testbed) {
    // A watch from now on; then garbage straight into etcd, then a good
    // object: the watch skips the garbage and goes on.
    let (_, list) = server.get(CONFIGMAPS).await;
    let version = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut connection = server.api.connect().await.unwrap();
    let watch = connection
        .send(
            Method::GET,
            &format!("{CONFIGMAPS}?watch=true&resourceVersion={version}&timeoutSeconds=30"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(watch.status(), StatusCode::OK);
    testbed
        .store()
        .put_raw("/registry/configmaps/default/x", "not json {")
        .unwrap();
    let (status, _, body) = server
        .request(
            Method::POST,
            CONFIGMAPS,
            Some(&configmap("after", "v")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut body = watch.into_body();
    let mut seen = Vec::new();
    let first = tokio::time::timeout(PATIENCE, async {
        loop {
            let frame = body.frame().await.unwrap().unwrap();
            seen.extend_from_slice(&frame.into_data().unwrap());
            if let Some(end) = seen.iter().position(|&b| b == b'\n') {
                return serde_json::from_slice::<Value>(&seen[..end]).unwrap();
            }
        }
    })
    .await
    .expect("the watch goes on past the corrupt value");
    assert_eq!(first["type"], "ADDED", "{first}");
    assert_eq!(first["object"]["metadata"]["name"], "after", "{first}");

    // Lists skip it; a GET of it names the key.
    let (status, list) = server.get(CONFIGMAPS).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"after") && !names.contains(&"x"),
        "{names:?}"
    );
    let (status, body) = server.get(&format!("{CONFIGMAPS}/x")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("failed to decode") && message.contains("/registry/configmaps/default/x"),
        "{message}"
    );
    server.still_serves().await;
}

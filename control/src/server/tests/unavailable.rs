//! While etcd is down the API answers 503 with `Retry-After`, as
//! kube-apiserver's `ServiceUnavailable`, not 500.

use super::*;

/// A request with the test token, headers included: (code, the
/// `Retry-After` value, the body as JSON).
async fn request(
    cluster: &Cluster,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Option<String>, Value) {
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let mut args = vec!["-i", "-H", &bearer, "-X", method];
    let body = body.map(Value::to_string);
    if let Some(body) = &body {
        args.extend(["-H", "Content-Type: application/json", "-d", body]);
    }
    let (code, text) = cluster.curl(path, &args).await;
    let (head, body) = text.split_once("\r\n\r\n").expect("headers, then the body");
    let retry_after = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().to_owned())
    });
    let body = serde_json::from_str(body).unwrap_or_else(|_| json!(body));
    (code, retry_after, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_etcd_is_503_with_retry_after() {
    let cluster = Cluster::start().await;
    let pods = "/api/v1/namespaces/default/pods";
    let (code, retry_after, _) = request(&cluster, "GET", pods, None).await;
    assert_eq!((code, retry_after), (200, None));

    cluster.etcd.kill();
    let configmap = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": "settings" },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": "web" },
        "spec": { "ports": [{ "port": 80 }] },
    });
    for (method, path, body) in [
        ("GET", pods.to_owned(), None),
        ("GET", format!("{pods}/web"), None),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps".to_owned(),
            Some(&configmap),
        ),
        // A Service's ClusterIP claim is the first write to fail.
        (
            "POST",
            "/api/v1/namespaces/default/services".to_owned(),
            Some(&service),
        ),
    ] {
        let (code, retry_after, status) = request(&cluster, method, &path, body).await;
        assert_eq!(code, 503, "{method} {path}: {status}");
        assert_eq!(retry_after.as_deref(), Some("1"), "{method} {path}");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "ServiceUnavailable", "{status}");
        assert_eq!(status["code"], 503);
        assert_eq!(status["details"]["retryAfterSeconds"], 1);
    }
}

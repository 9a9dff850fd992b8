//! The measurements, each returning its figures as one JSON object.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::Barrier;

use skiff_api_client::ApiClient;

/// The namespace the benchmark's Services live in.
pub const NAMESPACE: &str = "bench";
const SERVICES: &str = "/api/v1/namespaces/bench/services";

fn service(name: &str) -> Vec<u8> {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "selector": { "app": name },
            "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }],
        },
    })
    .to_string()
    .into_bytes()
}

pub async fn create_namespace(client: &ApiClient) -> Result<()> {
    let namespace =
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": NAMESPACE } });
    let body = namespace.to_string();
    client
        .connect()
        .await?
        .call(
            Method::POST,
            "/api/v1/namespaces",
            Some(body.as_bytes()),
            &[StatusCode::CREATED],
        )
        .await?;
    Ok(())
}

/// Creates `count` ClusterIP Services over `concurrency` connections.
pub async fn create_rate(client: &ApiClient, count: usize, concurrency: usize) -> Result<Value> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let client = client.clone();
        tasks.spawn(async move {
            let mut conn = client.connect().await?;
            for index in (worker..count).step_by(concurrency) {
                let body = service(&format!("svc-{index}"));
                conn.call(Method::POST, SERVICES, Some(&body), &[StatusCode::CREATED])
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(json!({
        "bench": "create",
        "services": count,
        "concurrency": concurrency,
        "seconds": round(seconds),
        "per_second": round(count as f64 / seconds),
    }))
}

/// Lists every Service of the namespace `runs` times on one connection.
pub async fn list(client: &ApiClient, expected: usize, runs: usize) -> Result<Value> {
    let mut conn = client.connect().await?;
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let body = conn
            .call(Method::GET, SERVICES, None, &[StatusCode::OK])
            .await?;
        let list: Value = serde_json::from_slice(&body)?;
        times.push(started.elapsed());
        let items = list["items"].as_array().map_or(0, Vec::len);
        if items != expected {
            bail!("listed {items} Services, expected {expected}");
        }
        bytes = body.len();
    }
    times.sort();
    Ok(json!({
        "bench": "list",
        "services": expected,
        "runs": runs,
        "bytes": bytes,
        "ms_p50": millis(times[times.len() / 2]),
        "ms_max": millis(*times.last().expect("at least one run")),
    }))
}

/// `watchers` watches of the namespace see `events` new Services: how long
/// from the start of each create to each watcher's receipt.
pub async fn watch_fanout(client: &ApiClient, watchers: usize, events: usize) -> Result<Value> {
    let mut conn = client.connect().await?;
    let list: Value = serde_json::from_slice(
        &conn
            .call(
                Method::GET,
                &format!("{SERVICES}?limit=1"),
                None,
                &[StatusCode::OK],
            )
            .await?,
    )?;
    let version = list["metadata"]["resourceVersion"]
        .as_str()
        .context("no resourceVersion")?
        .to_owned();
    let path = format!("{SERVICES}?watch=true&resourceVersion={version}&timeoutSeconds=300");
    let ready = Arc::new(Barrier::new(watchers + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..watchers {
        let (client, path, ready) = (client.clone(), path.clone(), ready.clone());
        tasks.spawn(async move {
            let mut conn = client.connect().await?;
            let response = conn.send(Method::GET, &path, None).await?;
            ready.wait().await;
            receive(response.into_body(), events).await
        });
    }
    ready.wait().await;

    let started = Instant::now();
    let mut sent = HashMap::new();
    for index in 0..events {
        let name = format!("fan-{index}");
        sent.insert(name.clone(), Instant::now());
        conn.call(
            Method::POST,
            SERVICES,
            Some(&service(&name)),
            &[StatusCode::CREATED],
        )
        .await?;
    }
    let mut delays = Vec::new();
    while let Some(result) = tasks.join_next().await {
        for (name, at) in result?? {
            let sent_at = sent
                .get(&name)
                .context("an event for a Service not created")?;
            delays.push(at.duration_since(*sent_at));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    delays.sort();
    let at = |fraction: f64| millis(delays[((delays.len() - 1) as f64 * fraction) as usize]);
    Ok(json!({
        "bench": "watch_fanout",
        "watchers": watchers,
        "events": events,
        "deliveries": delays.len(),
        "delivery_ms_p50": at(0.5),
        "delivery_ms_p99": at(0.99),
        "delivery_ms_max": at(1.0),
        "deliveries_per_second": round(delays.len() as f64 / seconds),
    }))
}

/// Reads watch events until `events` ADDED ones: (name, when received).
async fn receive(mut body: hyper::body::Incoming, events: usize) -> Result<Vec<(String, Instant)>> {
    let mut received = Vec::with_capacity(events);
    let mut pending = Vec::new();
    while received.len() < events {
        let frame = body.frame().await.context("the watch ended early")??;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = Instant::now();
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line)?;
            if event["type"] == "ADDED"
                && let Some(name) = event["object"]["metadata"]["name"].as_str()
            {
                received.push((name.to_owned(), now));
            }
        }
    }
    Ok(received)
}

pub fn memory(phase: &str, services: usize, (control, etcd): (f64, f64)) -> Value {
    let total = control + etcd;
    json!({
        "bench": "rss",
        "phase": phase,
        "services": services,
        "skiff_control_mib": round(control),
        "etcd_mib": round(etcd),
        "total_mib": round(total),
        "target_mib": TARGET_RSS_MIB,
        "within_target": total <= TARGET_RSS_MIB,
    })
}

/// The idle memory budget for skiff-control and etcd together.
const TARGET_RSS_MIB: f64 = 256.0;

fn millis(duration: Duration) -> f64 {
    round(duration.as_secs_f64() * 1000.0)
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

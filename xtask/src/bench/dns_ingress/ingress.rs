//! Ingress from outside: requests per second and latency with `wrk` at 64
//! keep-alive connections from the outside client's netns, through skiff's
//! agent (on node 1's address, port 80, by an Ingress made through the
//! API) against nginx on node 1 (port 8080) configured with the same host
//! and path, to the same two nginx backend pods on node 2, alternating in
//! every round.

use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::json;
use skiff_tests::Host;

use super::{
    Rig, collection, endpoint_slice, figure,
    nginx::{self, BACKEND_PORT, BODY},
    rounds, service, wrk,
};
use crate::bench::{plan::Plan, progress::Progress, results::Figure};

const HOST: &str = "bench.skiff.test";
/// The agent's Ingress port on every node's address.
const INGRESS_PORT: u16 = 80;
const SKIFF: &str = "skiff-ingress";
const BASELINE: &str = "nginx";
/// How long the agent may take to route a new Ingress.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(20);

pub fn run(rig: &mut Rig, plan: &Plan, progress: &Progress) -> Result<Vec<Figure>> {
    progress
        .step("Ingress: the backends' Service, its EndpointSlice and the Ingress, through the API");
    let backends = rig.backend_ips();
    let ingress = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": {
            "ingressClassName": "skiff",
            "rules": [{
                "host": HOST,
                "http": { "paths": [{
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": { "service": { "name": "web", "port": { "number": BACKEND_PORT } } },
                }] },
            }],
        },
    });
    rig.create_all(vec![
        service(
            "web",
            Some(std::net::Ipv4Addr::new(10, 96, 48, 0)),
            BACKEND_PORT,
        ),
        endpoint_slice("web", &backends, BACKEND_PORT),
        (collection("networking.k8s.io/v1", "ingresses"), ingress),
    ])?;

    let (server, baseline) = nginx::proxy(rig.node(1), HOST, &backends, rig.state_dir())?;
    rig.keep(server);
    let baseline_url = format!("http://{baseline}/");
    wait_routed(rig.ext(), &baseline_url).context("the nginx baseline does not route")?;
    let skiff_url = format!("http://{}:{INGRESS_PORT}/", rig.node_ip(1));
    let skiff_unavailable = wait_routed(rig.ext(), &skiff_url)
        .err()
        .map(|error| format!("the agent's Ingress does not route {HOST}: {error:#}"));
    if let Some(why) = &skiff_unavailable {
        progress.step(format_args!("Ingress: {SKIFF} not measured: {why}"));
    }

    let variants = [(BASELINE, None), (SKIFF, skiff_unavailable)];
    let mut figures = [
        (
            "ingress_rps",
            "Ingress requests per second (wrk, 64 connections, from outside)",
            "req/s",
            true,
        ),
        ("ingress_p50_ms", "Ingress request latency p50", "ms", false),
        ("ingress_p99_ms", "Ingress request latency p99", "ms", false),
    ]
    .map(|head| figure(head, BASELINE, &variants))
    .to_vec();
    let targets = [(BASELINE, baseline_url), (SKIFF, skiff_url)];
    rounds(
        plan,
        &mut figures,
        &targets,
        |url| {
            let report = wrk::run(rig.ext(), url, HOST, plan.figure_time)?;
            Ok(vec![
                ("ingress_rps", report.requests_per_second),
                ("ingress_p50_ms", report.p50_ms),
                ("ingress_p99_ms", report.p99_ms),
            ])
        },
        progress,
    );
    Ok(figures)
}

/// Until `url` with `Host: HOST`, from `from`, answers the backends' body.
fn wait_routed(from: &Host, url: &str) -> Result<()> {
    let deadline = Instant::now() + ROUTE_TIMEOUT;
    loop {
        let mut curl = from.command("curl");
        curl.args(["-s", "--max-time", "2", "-H"])
            .arg(format!("Host: {HOST}"))
            .arg(url);
        let answer = super::output_of(&mut curl);
        match answer {
            Ok(body) if body.trim() == BODY => return Ok(()),
            _ if Instant::now() > deadline => match answer {
                Ok(body) => bail!("{url} after {ROUTE_TIMEOUT:?} answers {:?}", body.trim()),
                Err(error) => bail!("{url} after {ROUTE_TIMEOUT:?}: {error:#}"),
            },
            _ => thread::sleep(Duration::from_millis(200)),
        }
    }
}

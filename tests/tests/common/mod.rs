//! The fixture the end-to-end tests share: the Service `default/web` with a
//! backend on each of two nodes and a client pod, through real agents and a
//! real etcd.
//!
//! Every test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use skiff_tests::{
    AgentSource, CallResult, EndpointSpec, Pod, PortSpec, Testbed, agent_binary, echo_binary,
    endpoint_slice, endpoint_slice_key, parse_call_output, service, service_key,
};

pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// The agent must act on an etcd change within this long (the agent's reaction-time target).
pub const REACTION_BOUND: Duration = Duration::from_secs(1);

const SLICE: &str = "web-x7k2p";

fn web_ports() -> Vec<PortSpec> {
    vec![
        PortSpec {
            name: "http",
            protocol: "TCP",
            port: 80,
            target_port: 8080,
        },
        PortSpec {
            name: "admin",
            protocol: "TCP",
            port: 81,
            target_port: 9090,
        },
        PortSpec {
            name: "dns",
            protocol: "UDP",
            port: 53,
            target_port: 5353,
        },
    ]
}

/// `default/web`: backends web-a (node1) and web-b (node2), each serving
/// http on 8080, admin on 9090 (as `<name>-admin`) and dns on UDP 5353; a
/// client pod on node1.
pub struct Web {
    pub testbed: Testbed,
    pub client: Pod,
    pub a: Pod,
    pub b: Pod,
}

impl Web {
    pub fn start() -> Web {
        Self::start_on(AgentSource::from_env())
    }

    /// As [`Web::start`], the agents reading `source`.
    pub fn start_on(source: AgentSource) -> Web {
        let mut testbed = Testbed::start_sourced(2, source).expect("the testbed starts");
        let a = testbed
            .serve(1, "web-a", &[8080], &[5353])
            .expect("web-a serves");
        testbed
            .serve_in(&a, "web-a-admin", &[9090], &[])
            .expect("web-a-admin serves");
        let b = testbed
            .serve(2, "web-b", &[8080], &[5353])
            .expect("web-b serves");
        testbed
            .serve_in(&b, "web-b-admin", &[9090], &[])
            .expect("web-b-admin serves");
        let client = testbed.add_pod(1, "client").expect("client pod");
        let web = Web {
            testbed,
            client,
            a,
            b,
        };
        web.put_service(|_| {});
        web.set_endpoints(&[web.ready(&web.a), web.ready(&web.b)]);
        web.wait_until_answering();
        web
    }

    /// Writes the Service, first changed by `edit` (e.g. to set a policy).
    pub fn put_service(&self, edit: impl FnOnce(&mut Value)) {
        let mut object = service("default", "web", VIP, &web_ports());
        edit(&mut object);
        self.testbed
            .store()
            .put(&service_key("default", "web"), &object)
            .expect("service written");
    }

    pub fn ready(&self, pod: &Pod) -> EndpointSpec {
        EndpointSpec::ready(pod.ip(), pod.node())
    }

    pub fn set_endpoints(&self, endpoints: &[EndpointSpec]) {
        self.testbed
            .store()
            .put(
                &endpoint_slice_key("default", SLICE),
                &endpoint_slice("default", SLICE, "web", &web_ports(), endpoints),
            )
            .expect("endpoint slice written");
    }

    pub fn delete_all(&self) {
        let store = self.testbed.store();
        store
            .delete(&service_key("default", "web"))
            .expect("service deleted");
        store
            .delete(&endpoint_slice_key("default", SLICE))
            .expect("slice deleted");
    }

    pub fn call(&self, args: &[&str]) -> Vec<CallResult> {
        self.call_from(&self.client, args)
    }

    pub fn call_from(&self, pod: &Pod, args: &[&str]) -> Vec<CallResult> {
        self.testbed.call(pod, args).expect("skiff-echo call runs")
    }

    fn wait_until_answering(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.call(&["tcp", "10.96.0.10:80"])[0].is_ok() {
            assert!(Instant::now() < deadline, "the ClusterIP never answered");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn vip(port: u16) -> SocketAddr {
    SocketAddr::from((VIP, port))
}

/// The backends that answered; panics on any failed attempt or on a peer
/// address other than `peer`.
pub fn answered(results: &[CallResult], peer: SocketAddr) -> BTreeSet<String> {
    assert!(!results.is_empty(), "no attempt was made");
    results
        .iter()
        .map(|result| match result {
            CallResult::Ok {
                backend,
                peer: seen,
                ..
            } => {
                assert_eq!(*seen, peer, "the client saw the wrong peer address");
                backend.clone()
            }
            CallResult::Failed { error, .. } => panic!("an attempt failed: {error}"),
        })
        .collect()
}

pub fn names(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

/// Every attempt failed, with one of `kinds`, and quickly (well before the
/// attempt's own timeout).
pub fn assert_fails_fast(results: &[CallResult], kinds: &[skiff_tests::FailureKind]) {
    assert!(!results.is_empty(), "no attempt was made");
    for result in results {
        match result {
            CallResult::Failed {
                kind, elapsed_ms, ..
            } => {
                assert!(
                    kinds.contains(kind),
                    "failed as {kind:?}, expected one of {kinds:?}"
                );
                assert!(*elapsed_ms < 1000, "took {elapsed_ms} ms to fail");
            }
            CallResult::Ok { backend, .. } => panic!("{backend} answered"),
        }
    }
}

/// The value of `series` (a metric name with its labels, exactly as
/// exported) on node `node`'s `/metrics`; `None` if it is not there.
pub fn metric(web: &Web, node: usize, series: &str) -> Option<u64> {
    web.testbed.cluster().node(node).agent_metric(series)
}

/// Whether `skiff-agent status` of node `node`'s pinned maps lists the
/// frontend `frontend` (`address:port/PROTOCOL`).
pub fn frontend_programmed(web: &Web, node: usize, frontend: &str) -> bool {
    programmed_backends(web, node, frontend).is_some()
}

/// The backends (`address:port`) `skiff-agent status` of node `node`'s
/// pinned maps lists under the frontend `frontend`
/// (`address:port/PROTOCOL`); `None` while the frontend is not there.
pub fn programmed_backends(web: &Web, node: usize, frontend: &str) -> Option<BTreeSet<String>> {
    let status = std::process::Command::new(agent_binary().expect("skiff-agent is built"))
        .arg("status")
        .arg("--bpffs")
        .arg(web.testbed.cluster().bpffs_dir(node))
        .output()
        .expect("skiff-agent status runs");
    let report = String::from_utf8_lossy(&status.stdout);
    let mut lines = report
        .lines()
        .skip_while(|line| !line.starts_with(frontend));
    lines.next()?;
    Some(
        lines
            .map_while(|line| line.strip_prefix("  -> "))
            .map(str::to_owned)
            .collect(),
    )
}

/// `skiff-echo call <args>` from the outside client, which no socket hook
/// sees: only the per-packet programs on the nodes' uplinks can take its
/// packets to a backend.
pub fn call_from_outside(web: &Web, args: &[&str]) -> Vec<CallResult> {
    let output = web
        .testbed
        .cluster()
        .ext()
        .command(echo_binary().expect("skiff-echo is built"))
        .arg("call")
        .args(args)
        .output()
        .expect("skiff-echo runs");
    assert!(output.status.success(), "{output:?}");
    parse_call_output(&String::from_utf8_lossy(&output.stdout)).expect("call results")
}

/// Sends the outside client's traffic for the load balancer and external
/// IPs to node `node`, as an upstream router would.
pub fn route_external_ips_via(web: &Web, node: usize) {
    let via = web.testbed.cluster().node(node).ip().to_string();
    let output = web
        .testbed
        .cluster()
        .ext()
        .command("ip")
        .args(["route", "replace", "172.18.0.0/16", "via", &via])
        .output()
        .expect("ip runs");
    assert!(output.status.success(), "{output:?}");
}

//! A Service backend resolved to endpoints, from the agent's cache of
//! Services and EndpointSlices: the port by number or name becomes the
//! Service port's name, and the slices' port of that name gives each
//! endpoint's port. Ready endpoints are used; when a port has none, the
//! serving ones that are terminating, as kube-proxy does.
use std::net::SocketAddr;

use crate::proxy::cluster::protocol::Protocol;
use crate::proxy::cluster::records::{IpFamily, Usable};
use crate::proxy::cluster::service_ref::ServiceRef;
use crate::proxy::cluster::state::ClusterState;

use super::objects::PortRef;
use super::pool::Unavailable;

pub fn resolve(
    cluster: &ClusterState,
    service: &ServiceRef,
    port: &PortRef,
) -> Result<Vec<SocketAddr>, Unavailable> {
    let record = cluster.service(service).ok_or(Unavailable::NoService)?;
    let service_port = record
        .ports
        .iter()
        .filter(|p| p.protocol == Protocol::Tcp)
        .find(|p| match port {
            PortRef::Number(number) => p.port == Some(*number),
            PortRef::Name(name) => *p.name == **name,
        })
        .ok_or(Unavailable::NoSuchPort)?;
    let mut ready = Vec::new();
    let mut terminating = Vec::new();
    for slice in cluster.slices_of(service) {
        let Some(target) = slice
            .ports
            .iter()
            .find(|p| *p.name == *service_port.name && p.protocol == Some(Protocol::Tcp))
            .and_then(|p| p.port)
        else {
            continue;
        };
        // One family is enough: a dual-stack pod would otherwise be two
        // endpoints of the pool.
        if slice.family != IpFamily::V4 {
            continue;
        }
        for endpoint in slice.endpoints.iter() {
            let addr = SocketAddr::from((endpoint.ip, target));
            match endpoint.usable {
                Usable::Ready => ready.push(addr),
                Usable::ServingTerminating => terminating.push(addr),
            }
        }
    }
    let mut endpoints = if ready.is_empty() { terminating } else { ready };
    endpoints.sort();
    endpoints.dedup();
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::cluster::records::{SERVICE_NAME_LABEL, ServiceRecord, SliceRecord};
    use crate::proxy::cluster::state::ObjectChange;
    use serde_json::json;

    fn svc(name: &str) -> ServiceRef {
        ServiceRef {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn cluster(endpoints: serde_json::Value) -> ClusterState {
        let mut state = ClusterState::default();
        let service = json!({
            "spec": { "clusterIP": "10.96.0.10", "ports": [
                { "name": "http", "port": 80 }, { "name": "dns", "port": 53, "protocol": "UDP" }
            ] },
        });
        let slice = json!({
            "metadata": { "labels": { SERVICE_NAME_LABEL: "web" } },
            "addressType": "IPv4",
            "ports": [{ "name": "http", "port": 8080 }, { "name": "dns", "port": 5353, "protocol": "UDP" }],
            "endpoints": endpoints,
        });
        state.apply(ObjectChange::ServiceUpsert(
            svc("web"),
            ServiceRecord::from_json(&svc("web"), service.to_string().as_bytes()).unwrap(),
        ));
        state.apply(ObjectChange::SliceUpsert(
            svc("web-1"),
            SliceRecord::from_json(&svc("web-1"), slice.to_string().as_bytes()).unwrap(),
        ));
        state
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn port_by_number_or_name_gives_ready_endpoints() {
        let state = cluster(json!([
            { "addresses": ["10.244.1.2"], "conditions": { "ready": true } },
            { "addresses": ["10.244.2.2"] },
            { "addresses": ["10.244.1.3"], "conditions": { "ready": false, "serving": true, "terminating": true } },
        ]));
        let want = addrs(&["10.244.1.2:8080", "10.244.2.2:8080"]);
        assert_eq!(
            resolve(&state, &svc("web"), &PortRef::Number(80)),
            Ok(want.clone())
        );
        assert_eq!(
            resolve(&state, &svc("web"), &PortRef::Name("http".into())),
            Ok(want)
        );
        assert_eq!(
            resolve(&state, &svc("web"), &PortRef::Number(81)),
            Err(Unavailable::NoSuchPort)
        );
        // A UDP port is not an HTTP backend.
        assert_eq!(
            resolve(&state, &svc("web"), &PortRef::Name("dns".into())),
            Err(Unavailable::NoSuchPort)
        );
        assert_eq!(
            resolve(&state, &svc("nope"), &PortRef::Number(80)),
            Err(Unavailable::NoService)
        );
    }

    #[test]
    fn terminating_endpoints_serve_only_when_none_is_ready() {
        let state = cluster(json!([
            { "addresses": ["10.244.1.3"], "conditions": { "ready": false, "serving": true, "terminating": true } },
            { "addresses": ["10.244.1.4"], "conditions": { "ready": false } },
        ]));
        assert_eq!(
            resolve(&state, &svc("web"), &PortRef::Number(80)),
            Ok(addrs(&["10.244.1.3:8080"]))
        );
    }
}

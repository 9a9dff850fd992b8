//! Property tests of the watch's decoder: whatever etcd holds, a key and
//! a value decode or are refused, never a panic; and a Service or an
//! EndpointSlice the API stored decodes to the record of what it says.

use std::net::{IpAddr, Ipv4Addr};

use json_strategies::{mutate, value};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;

use super::*;
use crate::proxy::cluster::protocol::Protocol;
use crate::proxy::cluster::records::{SERVICE_NAME_LABEL, ServiceType, Usable};

const SERVICE_KEY: &[u8] = b"/registry/services/specs/default/web";
const SLICE_KEY: &[u8] = b"/registry/endpointslices/default/web-a";

fn decode(key: &[u8], value: &[u8]) -> Option<Result<Record, serde_json::Error>> {
    Records::for_node("node1")
        .key(key)
        .map(|name| Records::for_node("node1").value(&name, value, 1))
}

/// A port as the API stores it: a protocol the datapath balances and a
/// number in range.
fn service_port() -> impl Strategy<Value = ServicePort> {
    (
        "[a-z]{0,4}",
        prop::sample::select(vec!["TCP", "UDP"]),
        1..=65535i32,
        prop::option::of(30000..=32767i32),
    )
        .prop_map(|(name, protocol, port, node_port)| ServicePort {
            name: (!name.is_empty()).then_some(name),
            protocol: Some(protocol.to_owned()),
            port,
            node_port,
            ..Default::default()
        })
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn service() -> impl Strategy<Value = Service> {
    (
        prop::sample::select(vec!["ClusterIP", "NodePort", "LoadBalancer"]),
        prop::collection::vec(ipv4(), 0..3),
        prop::collection::vec(service_port(), 0..4),
        prop::collection::vec(ipv4(), 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(type_, cluster_ips, ports, external_ips, internal_local, external_local)| Service {
                metadata: ObjectMeta {
                    name: Some("web".to_owned()),
                    namespace: Some("default".to_owned()),
                    ..Default::default()
                },
                spec: Some(ServiceSpec {
                    type_: Some(type_.to_owned()),
                    cluster_ip: cluster_ips.first().map(Ipv4Addr::to_string),
                    cluster_ips: Some(cluster_ips.iter().map(Ipv4Addr::to_string).collect()),
                    ports: Some(ports),
                    external_ips: Some(external_ips.iter().map(Ipv4Addr::to_string).collect()),
                    internal_traffic_policy: Some(
                        if internal_local { "Local" } else { "Cluster" }.to_owned(),
                    ),
                    external_traffic_policy: Some(
                        if external_local { "Local" } else { "Cluster" }.to_owned(),
                    ),
                    ..Default::default()
                }),
                status: None,
            },
        )
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    (
        prop::collection::vec(ipv4(), 1..3),
        prop::option::of("node[0-3]"),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(addresses, node_name, ready, serving, terminating)| Endpoint {
                addresses: addresses.iter().map(Ipv4Addr::to_string).collect(),
                node_name,
                conditions: Some(EndpointConditions {
                    ready,
                    serving,
                    terminating,
                }),
                ..Default::default()
            },
        )
}

fn slice() -> impl Strategy<Value = EndpointSlice> {
    (
        prop::collection::vec(endpoint(), 0..5),
        prop::collection::vec(("[a-z]{0,3}", 1..=65535i32), 0..3),
    )
        .prop_map(|(endpoints, ports)| EndpointSlice {
            metadata: ObjectMeta {
                name: Some("web-a".to_owned()),
                namespace: Some("default".to_owned()),
                labels: Some([(SERVICE_NAME_LABEL.to_owned(), "web".to_owned())].into()),
                ..Default::default()
            },
            address_type: "IPv4".to_owned(),
            endpoints: Some(endpoints),
            ports: Some(
                ports
                    .into_iter()
                    .map(|(name, port)| EndpointPort {
                        name: Some(name),
                        port: Some(port),
                        protocol: Some("TCP".to_owned()),
                        ..Default::default()
                    })
                    .collect(),
            ),
        })
}

/// kube-proxy's reading of an endpoint's conditions.
fn usable(conditions: &EndpointConditions) -> Option<Usable> {
    let ready = conditions.ready.unwrap_or(true);
    let serving = conditions.serving.unwrap_or(ready);
    if ready {
        Some(Usable::Ready)
    } else if serving && conditions.terminating == Some(true) {
        Some(Usable::ServingTerminating)
    } else {
        None
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_key_and_value_decode_or_are_refused(
        key in prop_oneof![
            Just(SERVICE_KEY.to_vec()),
            Just(SLICE_KEY.to_vec()),
            prop::collection::vec(any::<u8>(), 0..48),
        ],
        value in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = decode(&key, &value);
    }

    #[test]
    fn a_changed_service_or_slice_decodes_or_is_refused(
        service in service(),
        slice in slice(),
        choices in prop::collection::vec(any::<usize>(), 1..6),
        new in value(),
    ) {
        let mut service = serde_json::to_value(service).unwrap();
        mutate(&mut service, &choices, new.clone());
        let _ = decode(SERVICE_KEY, service.to_string().as_bytes());
        let mut slice = serde_json::to_value(slice).unwrap();
        mutate(&mut slice, &choices, new);
        let _ = decode(SLICE_KEY, slice.to_string().as_bytes());
    }

    #[test]
    fn a_stored_service_decodes_to_its_record(service in service()) {
        let json = serde_json::to_vec(&service).unwrap();
        let Some(Ok(Record::Service(name, record))) = decode(SERVICE_KEY, &json) else {
            panic!("a stored Service decodes");
        };
        prop_assert_eq!(&*name.name, "web");
        let spec = service.spec.unwrap();
        let mut cluster_ips: Vec<Ipv4Addr> = Vec::new();
        for ip in spec.cluster_ips.unwrap() {
            let ip = ip.parse().unwrap();
            if !cluster_ips.contains(&ip) {
                cluster_ips.push(ip);
            }
        }
        prop_assert_eq!(&*record.cluster_ips, &cluster_ips[..]);
        let type_ = match spec.type_.as_deref() {
            Some("NodePort") => ServiceType::NodePort,
            Some("LoadBalancer") => ServiceType::LoadBalancer,
            _ => ServiceType::ClusterIp,
        };
        prop_assert_eq!(record.type_, type_);
        let ports = spec.ports.unwrap();
        prop_assert_eq!(record.ports.len(), ports.len());
        for (kept, sent) in record.ports.iter().zip(&ports) {
            prop_assert_eq!(&*kept.name, sent.name.as_deref().unwrap_or(""));
            prop_assert_eq!(Some(kept.protocol), Protocol::from_field(sent.protocol.as_deref()));
            prop_assert_eq!(kept.port.map(i32::from), Some(sent.port));
            prop_assert_eq!(kept.node_port.map(i32::from), sent.node_port);
        }
        prop_assert_eq!(record.internal_local, spec.internal_traffic_policy.as_deref() == Some("Local"));
        prop_assert_eq!(record.external_local, spec.external_traffic_policy.as_deref() == Some("Local"));
        let mut external_ips: Vec<Ipv4Addr> = Vec::new();
        for ip in spec.external_ips.unwrap() {
            let ip = ip.parse().unwrap();
            if !external_ips.contains(&ip) {
                external_ips.push(ip);
            }
        }
        prop_assert_eq!(&*record.external_ips, &external_ips[..]);
    }

    #[test]
    fn a_stored_slice_decodes_to_its_record(slice in slice()) {
        let json = serde_json::to_vec(&slice).unwrap();
        let Some(Ok(Record::Slice(_, record))) = decode(SLICE_KEY, &json) else {
            panic!("a stored EndpointSlice decodes");
        };
        prop_assert_eq!(record.service.as_deref(), Some("web"));
        let mut wanted = Vec::new();
        for endpoint in slice.endpoints.iter().flatten() {
            let Some(usable) = usable(endpoint.conditions.as_ref().unwrap()) else {
                continue;
            };
            for address in &endpoint.addresses {
                wanted.push((address.parse::<IpAddr>().unwrap(), endpoint.node_name.as_deref(), usable));
            }
        }
        let decoded: Vec<_> = record
            .endpoints
            .iter()
            .map(|endpoint| (endpoint.ip, record.node_of(endpoint), endpoint.usable))
            .collect();
        prop_assert_eq!(decoded, wanted);
        let ports: Vec<_> = record.ports.iter().map(|port| (&*port.name, port.port)).collect();
        let sent: Vec<_> = slice
            .ports
            .iter()
            .flatten()
            .map(|port| (port.name.as_deref().unwrap(), port.port.and_then(|p| u16::try_from(p).ok())))
            .collect();
        prop_assert_eq!(ports, sent);
    }
}

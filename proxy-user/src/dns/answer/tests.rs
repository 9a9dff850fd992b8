use std::net::Ipv4Addr;

use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::{Value, json};

use super::{Answer, Zone};
use crate::dns::index::{DnsService, Index};
use crate::proxy::cluster::records::{SERVICE_NAME_LABEL, ServiceRecord, SliceRecord};
use crate::proxy::cluster::service_ref::ServiceRef;

fn svc(namespace: &str, name: &str) -> ServiceRef {
    ServiceRef {
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn service(spec: Value) -> ServiceRecord {
    let json = json!({ "spec": spec }).to_string();
    ServiceRecord::from_json(&svc("x", "x"), json.as_bytes()).unwrap()
}

fn slice(service: &str, ports: Value, endpoints: Value) -> SliceRecord {
    let json = json!({
        "metadata": { "labels": { SERVICE_NAME_LABEL: service } },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    })
    .to_string();
    SliceRecord::from_json(&svc("x", "x"), json.as_bytes()).unwrap()
}

/// `web` (ClusterIP 10.96.0.20, ports http/TCP 80 and dns/UDP 53),
/// `nginx` (headless: web-0 and web-1 ready with hostnames, one ready
/// without, one not ready), `db` (headless, no endpoints), `ext`
/// (ExternalName), all in `shop`.
fn index() -> Index {
    let mut index = Index::default();
    let web = service(json!({
        "clusterIP": "10.96.0.20",
        "ports": [
            { "name": "http", "port": 80 },
            { "name": "dns", "port": 53, "protocol": "UDP" },
        ],
    }));
    index.set(&svc("shop", "web"), Some(DnsService::of(&web, &[])));
    let nginx = service(json!({ "clusterIP": "None", "ports": [{ "name": "web", "port": 80 }] }));
    let nginx_slice = slice(
        "nginx",
        json!([{ "name": "web", "port": 8080, "protocol": "TCP" }]),
        json!([
            { "addresses": ["10.244.1.2"], "hostname": "web-0", "conditions": { "ready": true } },
            { "addresses": ["10.244.2.2"], "hostname": "web-1" },
            { "addresses": ["10.244.1.3"] },
            { "addresses": ["10.244.1.4"], "hostname": "web-2", "conditions": { "ready": false } },
            { "addresses": ["10.244.1.5"], "hostname": "web-3",
              "conditions": { "ready": false, "serving": true, "terminating": true } },
        ]),
    );
    index.set(
        &svc("shop", "nginx"),
        Some(DnsService::of(&nginx, &[&nginx_slice])),
    );
    let db = service(json!({ "clusterIP": "None" }));
    index.set(&svc("shop", "db"), Some(DnsService::of(&db, &[])));
    let ext = service(json!({ "type": "ExternalName", "externalName": "db.example.com" }));
    index.set(&svc("shop", "ext"), Some(DnsService::of(&ext, &[])));
    index
}

fn zone() -> Zone {
    Zone::new("cluster.local").unwrap()
}

fn ask(index: &Index, name: &str, kind: RecordType) -> Answer {
    zone().answer(index, &Name::from_ascii(name).unwrap(), kind)
}

/// The answer section's data, rendered, in order.
fn data(answer: &Answer) -> Vec<String> {
    match answer {
        Answer::Records { answers, .. } => answers
            .iter()
            .map(|record| record.data.to_string())
            .collect(),
        other => panic!("expected records, got {other:?}"),
    }
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

#[test]
fn a_cluster_ip_service_has_its_address() {
    let index = index();
    let answer = ask(&index, "web.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&answer), ["10.96.0.20"]);
    let Answer::Records { answers, .. } = &answer else {
        unreachable!()
    };
    assert_eq!(answers[0].ttl, 5);
    assert_eq!(answers[0].name.to_string(), "web.shop.svc.cluster.local.");
}

#[test]
fn names_match_whatever_their_case_and_answers_keep_the_asked_case() {
    let index = index();
    let answer = ask(&index, "Web.SHOP.svc.Cluster.Local.", RecordType::A);
    assert_eq!(data(&answer), ["10.96.0.20"]);
    let Answer::Records { answers, .. } = &answer else {
        unreachable!()
    };
    assert_eq!(answers[0].name.to_string(), "Web.SHOP.svc.Cluster.Local.");
}

#[test]
fn existing_names_without_the_type_are_nodata_and_others_nxdomain() {
    let index = index();
    assert_eq!(
        ask(&index, "web.shop.svc.cluster.local.", RecordType::AAAA),
        Answer::NoData
    );
    assert_eq!(
        ask(&index, "web.shop.svc.cluster.local.", RecordType::MX),
        Answer::NoData
    );
    assert_eq!(
        ask(&index, "nope.shop.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    assert_eq!(
        ask(&index, "web.other.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    assert_eq!(
        ask(&index, "foo.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    assert_eq!(
        ask(&index, "shop.svc.cluster.local.", RecordType::A),
        Answer::NoData
    );
    assert_eq!(
        ask(&index, "other.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    assert_eq!(
        ask(&index, "svc.cluster.local.", RecordType::A),
        Answer::NoData
    );
    // A headless Service without ready endpoints still exists.
    assert_eq!(
        ask(&index, "db.shop.svc.cluster.local.", RecordType::A),
        Answer::NoData
    );
    let soa = ask(&index, "cluster.local.", RecordType::SOA);
    assert!(data(&soa)[0].starts_with("ns.dns.cluster.local. hostmaster.cluster.local."));
}

#[test]
fn a_headless_service_has_its_ready_endpoints_only() {
    let index = index();
    let answer = ask(&index, "nginx.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(
        sorted(data(&answer)),
        ["10.244.1.2", "10.244.1.3", "10.244.2.2"]
    );
}

#[test]
fn endpoints_are_named_by_hostname_or_dashed_address() {
    let index = index();
    let web0 = ask(&index, "web-0.nginx.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&web0), ["10.244.1.2"]);
    let unnamed = ask(
        &index,
        "10-244-1-3.nginx.shop.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(data(&unnamed), ["10.244.1.3"]);
    // Not ready, and not serving: no name.
    for gone in ["web-2", "web-3", "10-244-1-2", "web-9"] {
        let name = format!("{gone}.nginx.shop.svc.cluster.local.");
        assert_eq!(
            ask(&index, &name, RecordType::A),
            Answer::NxDomain,
            "{name}"
        );
    }
    // Endpoint names belong to headless Services.
    assert_eq!(
        ask(&index, "web-0.web.shop.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
}

#[test]
fn srv_of_a_cluster_ip_service_targets_the_service() {
    let index = index();
    let answer = ask(
        &index,
        "_http._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(data(&answer), ["0 100 80 web.shop.svc.cluster.local."]);
    let Answer::Records { additionals, .. } = &answer else {
        unreachable!()
    };
    assert_eq!(additionals[0].data.to_string(), "10.96.0.20");
    let udp = ask(
        &index,
        "_dns._udp.web.shop.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(data(&udp), ["0 100 53 web.shop.svc.cluster.local."]);
    assert_eq!(
        ask(
            &index,
            "_http._udp.web.shop.svc.cluster.local.",
            RecordType::SRV
        ),
        Answer::NxDomain
    );
    assert_eq!(
        ask(
            &index,
            "_http._tcp.web.shop.svc.cluster.local.",
            RecordType::A
        ),
        Answer::NoData
    );
    assert_eq!(
        ask(&index, "_tcp.web.shop.svc.cluster.local.", RecordType::SRV),
        Answer::NoData
    );
    assert_eq!(
        ask(&index, "_sctp.web.shop.svc.cluster.local.", RecordType::SRV),
        Answer::NxDomain
    );
}

#[test]
fn srv_of_a_headless_service_targets_each_ready_endpoint() {
    let index = index();
    let answer = ask(
        &index,
        "_web._tcp.nginx.shop.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        sorted(data(&answer)),
        [
            "0 33 8080 10-244-1-3.nginx.shop.svc.cluster.local.",
            "0 33 8080 web-0.nginx.shop.svc.cluster.local.",
            "0 33 8080 web-1.nginx.shop.svc.cluster.local.",
        ]
    );
}

#[test]
fn ptr_names_cluster_ips_and_headless_endpoints() {
    let index = index();
    let service = ask(&index, "20.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&service), ["web.shop.svc.cluster.local."]);
    let endpoint = ask(&index, "2.1.244.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&endpoint), ["web-0.nginx.shop.svc.cluster.local."]);
    let unnamed = ask(&index, "3.1.244.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&unnamed), ["10-244-1-3.nginx.shop.svc.cluster.local."]);
    // An address no Service owns is for the upstream servers.
    assert_eq!(
        ask(&index, "4.1.244.10.in-addr.arpa.", RecordType::PTR),
        Answer::NotOurs
    );
    assert_eq!(
        ask(&index, "20.0.96.10.in-addr.arpa.", RecordType::A),
        Answer::NoData
    );
}

#[test]
fn an_external_name_service_is_a_cname() {
    let index = index();
    for kind in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
        let answer = ask(&index, "ext.shop.svc.cluster.local.", kind);
        assert_eq!(data(&answer), ["db.example.com."]);
        let Answer::Records { answers, .. } = &answer else {
            unreachable!()
        };
        assert!(matches!(&answers[0].data, RData::CNAME(_)));
    }
}

#[test]
fn pods_are_named_by_dashed_address() {
    let index = index();
    let answer = ask(&index, "10-244-1-9.shop.pod.cluster.local.", RecordType::A);
    assert_eq!(data(&answer), ["10.244.1.9"]);
    assert_eq!(
        ask(
            &index,
            "10-244-1-9.shop.pod.cluster.local.",
            RecordType::AAAA
        ),
        Answer::NoData
    );
    assert_eq!(
        ask(&index, "10-244-1.shop.pod.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
}

#[test]
fn other_names_are_not_ours() {
    let index = index();
    assert_eq!(ask(&index, "example.com.", RecordType::A), Answer::NotOurs);
    assert_eq!(
        ask(&index, "cluster.local.example.com.", RecordType::A),
        Answer::NotOurs
    );
}

#[test]
fn a_removed_or_changed_service_leaves_no_name_behind() {
    let mut index = index();
    index.set(&svc("shop", "web"), None);
    assert_eq!(
        ask(&index, "web.shop.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
    assert_eq!(
        ask(&index, "20.0.96.10.in-addr.arpa.", RecordType::PTR),
        Answer::NotOurs
    );

    let moved = service(json!({ "clusterIP": "10.96.0.21" }));
    index.set(&svc("shop", "nginx"), Some(DnsService::of(&moved, &[])));
    assert_eq!(
        ask(&index, "2.1.244.10.in-addr.arpa.", RecordType::PTR),
        Answer::NotOurs
    );
    let answer = ask(&index, "nginx.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&answer), [Ipv4Addr::new(10, 96, 0, 21).to_string()]);

    for name in ["nginx", "db", "ext"] {
        index.set(&svc("shop", name), None);
    }
    assert_eq!(
        ask(&index, "shop.svc.cluster.local.", RecordType::A),
        Answer::NxDomain
    );
}

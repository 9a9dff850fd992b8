//! An `nft -f` script with the structure kube-proxy's nftables mode writes
//! (pkg/proxy/nftables/proxier.go): `table ip kube-proxy`, whose `services`
//! chain looks every packet up in the `service-ips` and
//! `service-nodeports` verdict maps; each service port has a
//! `service-<hash>-<ns>/<name>/<proto>/<port>` chain that picks an endpoint
//! chain with `numgen random mod N vmap`, and each endpoint chain DNATs;
//! the filter chains check new connections against the `cluster-ips` set
//! and the (here empty) no-endpoint and firewall maps.

use std::fmt::Write as _;

use super::catalog::{NAMESPACE, Svc, SvcPort};
use super::kube_hash::hash;

pub const TABLE: &str = "kube-proxy";

/// kube-proxy's hashAndTruncate: an 8-character hash in front keeps names
/// unique and tells similar ones apart.
fn hashed(name: &str) -> String {
    format!("{}-{name}", hash(name, 8))
}

fn port_base(svc: &Svc, port: &SvcPort) -> String {
    format!(
        "{NAMESPACE}/{}/{}/{}",
        svc.name,
        port.protocol.lower(),
        port.name
    )
}

pub fn service_chain(svc: &Svc, port: &SvcPort) -> String {
    format!("service-{}", hashed(&port_base(svc, port)))
}

fn external_chain(svc: &Svc, port: &SvcPort) -> String {
    format!("external-{}", hashed(&port_base(svc, port)))
}

fn endpoint_chain(svc: &Svc, port: &SvcPort, ip: &str, target_port: u16) -> String {
    format!(
        "endpoint-{}",
        hashed(&format!("{}__{ip}/{target_port}", port_base(svc, port)))
    )
}

/// The whole table for `services`, as one `nft -f` transaction (kube-proxy's
/// full sync). Starts by creating and deleting the table, so it loads the
/// same whether or not one is there.
pub fn script(services: &[Svc], cluster_cidr: &str, service_cidr: &str) -> String {
    let t = format!("ip {TABLE}");
    let mut out = format!(
        "add table {t}\ndelete table {t}\n\
         add table {t} {{ comment \"rules for kube-proxy\" ; }}\n\
         add chain {t} mark-for-masquerade\n\
         add rule {t} mark-for-masquerade mark set mark or 0x4000\n\
         add chain {t} masquerading\n\
         add rule {t} masquerading mark and 0x4000 == 0 return\n\
         add rule {t} masquerading mark set mark xor 0x4000\n\
         add rule {t} masquerading masquerade fully-random\n\
         add chain {t} services\n\
         add chain {t} nat-prerouting {{ type nat hook prerouting priority -100 ; }}\n\
         add rule {t} nat-prerouting jump services\n\
         add chain {t} nat-output {{ type nat hook output priority -100 ; }}\n\
         add rule {t} nat-output jump services\n\
         add chain {t} nat-postrouting {{ type nat hook postrouting priority 100 ; }}\n\
         add rule {t} nat-postrouting jump masquerading\n\
         add map {t} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\" ; }}\n\
         add map {t} service-nodeports {{ type inet_proto . inet_service : verdict ; comment \"NodePort traffic\" ; }}\n\
         add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips\n\
         add rule {t} services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports\n\
         add set {t} cluster-ips {{ type ipv4_addr ; comment \"Active ClusterIPs\" ; }}\n\
         add map {t} firewall-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; comment \"destinations that are subject to LoadBalancerSourceRanges\" ; }}\n\
         add map {t} no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict ; comment \"vmap to drop or reject packets to services with no endpoints\" ; }}\n\
         add map {t} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict ; comment \"vmap to drop or reject packets to service nodeports with no endpoints\" ; }}\n\
         add chain {t} firewall-check\n\
         add rule {t} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips\n\
         add chain {t} service-endpoints-check\n\
         add rule {t} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services\n\
         add chain {t} nodeport-endpoints-check\n\
         add rule {t} nodeport-endpoints-check fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports\n\
         add chain {t} cluster-ips-check\n\
         add rule {t} cluster-ips-check ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"\n\
         add rule {t} cluster-ips-check ip daddr {service_cidr} drop comment \"Drop traffic to unallocated ClusterIPs\"\n\
         add chain {t} filter-prerouting {{ type filter hook prerouting priority -110 ; }}\n\
         add rule {t} filter-prerouting ct state new jump firewall-check\n\
         add chain {t} filter-input {{ type filter hook input priority -110 ; }}\n\
         add rule {t} filter-input ct state new jump nodeport-endpoints-check\n\
         add rule {t} filter-input ct state new jump service-endpoints-check\n\
         add chain {t} filter-forward {{ type filter hook forward priority -110 ; }}\n\
         add rule {t} filter-forward ct state new jump service-endpoints-check\n\
         add rule {t} filter-forward ct state new jump cluster-ips-check\n\
         add chain {t} filter-output {{ type filter hook output priority -110 ; }}\n\
         add rule {t} filter-output ct state new jump service-endpoints-check\n\
         add rule {t} filter-output ct state new jump firewall-check\n\
         add chain {t} filter-output-post-dnat {{ type filter hook output priority -90 ; }}\n\
         add rule {t} filter-output-post-dnat ct state new jump cluster-ips-check\n"
    );
    for svc in services {
        for port in &svc.ports {
            write_service_port(&mut out, &t, svc, port, cluster_cidr);
        }
    }
    out
}

fn write_service_port(out: &mut String, t: &str, svc: &Svc, port: &SvcPort, cluster_cidr: &str) {
    let proto = port.protocol.lower();
    let chain = service_chain(svc, port);
    let endpoints: Vec<(String, String)> = svc
        .endpoints
        .iter()
        .map(|endpoint| {
            let ip = endpoint.ip.to_string();
            let chain = endpoint_chain(svc, port, &ip, port.target_port);
            (ip, chain)
        })
        .collect();
    for (ip, endpoint_chain) in &endpoints {
        let _ = write!(
            out,
            "add chain {t} {endpoint_chain}\n\
             add rule {t} {endpoint_chain} ip saddr {ip} jump mark-for-masquerade\n\
             add rule {t} {endpoint_chain} meta l4proto {proto} dnat to {ip}:{}\n",
            port.target_port
        );
    }
    let _ = write!(
        out,
        "add chain {t} {chain}\n\
         add rule {t} {chain} ip daddr {} {proto} dport {} ip saddr != {cluster_cidr} jump mark-for-masquerade\n",
        svc.vip, port.port
    );
    if !endpoints.is_empty() {
        let choices: Vec<String> = endpoints
            .iter()
            .enumerate()
            .map(|(i, (_, endpoint_chain))| format!("{i} : goto {endpoint_chain}"))
            .collect();
        let _ = writeln!(
            out,
            "add rule {t} {chain} numgen random mod {} vmap {{ {} }}",
            endpoints.len(),
            choices.join(" , ")
        );
    }
    let _ = writeln!(
        out,
        "add element {t} service-ips {{ {} . {proto} . {} : goto {chain} }}\n\
         add element {t} cluster-ips {{ {} }}",
        svc.vip, port.port, svc.vip
    );
    if let Some(node_port) = port.node_port {
        let external = external_chain(svc, port);
        let _ = write!(
            out,
            "add chain {t} {external}\n\
             add rule {t} {external} jump mark-for-masquerade\n\
             add rule {t} {external} goto {chain}\n\
             add element {t} service-nodeports {{ {proto} . {node_port} : goto {external} }}\n"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::bench::catalog::{Endpoint, Protocol};

    fn sink() -> Svc {
        Svc {
            name: "sink".into(),
            vip: Ipv4Addr::new(10, 102, 0, 12),
            ports: vec![SvcPort {
                name: "udp",
                protocol: Protocol::Udp,
                port: 9000,
                target_port: 9000,
                node_port: Some(30082),
            }],
            endpoints: (2..4)
                .map(|i| Endpoint {
                    ip: Ipv4Addr::new(10, 244, 1, i),
                    node: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn chain_names_follow_kube_proxy() {
        // kube-proxy's own test fixtures.
        assert_eq!(hashed("ns1/svc1/tcp/p80"), "ULMVA6XW-ns1/svc1/tcp/p80");
        assert_eq!(
            hashed("ns1/svc1/tcp/p80__10.180.0.1/80"),
            "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
        let svc = sink();
        let chain = service_chain(&svc, &svc.ports[0]);
        let hash_part = &chain["service-".len()..][..8];
        assert_eq!(chain, format!("service-{hash_part}-bench/sink/udp/udp"));
        assert_eq!(hash_part, hash("bench/sink/udp/udp", 8));
        let endpoint = endpoint_chain(&svc, &svc.ports[0], "10.244.1.2", 9000);
        assert!(
            endpoint.ends_with("-bench/sink/udp/udp__10.244.1.2/9000"),
            "{endpoint}"
        );
    }

    #[test]
    fn services_dispatch_through_verdict_maps_and_numgen() {
        let svc = sink();
        let text = script(std::slice::from_ref(&svc), "10.244.0.0/16", "10.96.0.0/12");
        let chain = service_chain(&svc, &svc.ports[0]);
        assert!(text.contains(
            "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips\n"
        ));
        assert!(text.contains(&format!(
            "add element ip kube-proxy service-ips {{ 10.102.0.12 . udp . 9000 : goto {chain} }}"
        )));
        let numgen = text
            .lines()
            .find(|l| l.starts_with(&format!("add rule ip kube-proxy {chain} numgen")))
            .expect("a numgen rule");
        assert!(
            numgen.contains("numgen random mod 2 vmap { 0 : goto endpoint-"),
            "{numgen}"
        );
        assert!(numgen.contains(" , 1 : goto endpoint-"), "{numgen}");
        assert!(text.contains("meta l4proto udp dnat to 10.244.1.3:9000\n"));
        assert!(text.contains("add element ip kube-proxy cluster-ips { 10.102.0.12 }\n"));
        assert!(text.contains(
            "add rule ip kube-proxy filter-forward ct state new jump cluster-ips-check\n"
        ));
        assert!(text.contains(&format!(
            "add element ip kube-proxy service-nodeports {{ udp . 30082 : goto {} }}",
            external_chain(&svc, &svc.ports[0])
        )));
    }

    #[test]
    fn chains_are_added_before_they_are_referenced() {
        let text = script(&[sink()], "10.244.0.0/16", "10.96.0.0/12");
        let mut added = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(chain) = line.strip_prefix("add chain ip kube-proxy ") {
                added.insert(chain.split(' ').next().unwrap().to_owned());
            }
            for target in line.split("goto ").skip(1) {
                let target = target.split([' ', '}']).next().unwrap();
                assert!(added.contains(target), "{target} used before it was added");
            }
        }
    }
}

//! iptables-restore input with the structure kube-proxy's iptables mode
//! writes (pkg/proxy/iptables/proxier.go): KUBE-SERVICES matches each
//! ClusterIP and jumps to KUBE-SVC-<hash>, which picks a KUBE-SEP-<hash>
//! with a `-m statistic --mode random --probability` cascade; KUBE-SEP
//! DNATs; NodePorts go KUBE-NODEPORTS -> KUBE-EXT-<hash> -> KUBE-SVC;
//! KUBE-MARK-MASQ marks and KUBE-POSTROUTING masquerades; and the filter
//! table's per-packet checks (KUBE-FORWARD and friends).

use std::fmt::Write as _;

use super::catalog::{NAMESPACE, Svc, SvcPort};
use super::kube_hash::hash;

/// Above this many endpoints kube-proxy drops per-endpoint comments
/// (`largeClusterEndpointsThreshold`), which shrinks a big ruleset.
const LARGE_CLUSTER_ENDPOINTS: usize = 1000;

/// `ns/name:port`, kube-proxy's ServicePortName.
fn service_port_name(svc: &Svc, port: &SvcPort) -> String {
    format!("{NAMESPACE}/{}:{}", svc.name, port.name)
}

pub fn svc_chain(svc: &Svc, port: &SvcPort) -> String {
    format!(
        "KUBE-SVC-{}",
        hash(&(service_port_name(svc, port) + port.protocol.lower()), 16)
    )
}

fn ext_chain(svc: &Svc, port: &SvcPort) -> String {
    format!(
        "KUBE-EXT-{}",
        hash(&(service_port_name(svc, port) + port.protocol.lower()), 16)
    )
}

fn sep_chain(svc: &Svc, port: &SvcPort, endpoint: &str) -> String {
    let name = service_port_name(svc, port) + port.protocol.lower() + endpoint;
    format!("KUBE-SEP-{}", hash(&name, 16))
}

/// The complete `*nat` table for `services`, for `iptables-restore` into an
/// empty table (kube-proxy's full sync). `cluster_cidr` is the pod network:
/// traffic to a ClusterIP from outside it is masqueraded.
pub fn restore_input(services: &[Svc], cluster_cidr: &str) -> String {
    let endpoints: usize = services
        .iter()
        .map(|svc| svc.endpoints.len() * svc.ports.len())
        .sum();
    let large = endpoints > LARGE_CLUSTER_ENDPOINTS;
    let mut chains = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         :KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n",
    );
    let mut rules = String::from(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n\
         -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n",
    );
    for svc in services {
        for port in &svc.ports {
            write_service_port(&mut chains, &mut rules, svc, port, cluster_cidr, large);
        }
    }
    rules.push_str(
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" \
         -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n",
    );
    chains + &rules + "COMMIT\n" + FILTER_TABLE
}

/// kube-proxy's filter table: the per-packet checks on INPUT, FORWARD and
/// OUTPUT (conntrack state, the masquerade mark). Its per-service chains
/// (firewalls, REJECT for Services without endpoints, health check ports)
/// stay empty for these Services. kube-proxy also counts the INVALID drops
/// with `-m nfacct`; left out, as it needs an nfacct object.
const FILTER_TABLE: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
:KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-FORWARD - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-PROXY-FIREWALL - [0:0]\n:KUBE-SERVICES - [0:0]\n\
-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
-A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS\n\
-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n\
-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n\
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n\
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n\
-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n\
-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
COMMIT\n";

fn write_service_port(
    chains: &mut String,
    rules: &mut String,
    svc: &Svc,
    port: &SvcPort,
    cluster_cidr: &str,
    large: bool,
) {
    let name = service_port_name(svc, port);
    let proto = port.protocol.lower();
    let svc_chain = svc_chain(svc, port);
    let _ = writeln!(chains, ":{svc_chain} - [0:0]");
    let matches = format!(
        "-m {proto} -p {proto} -d {}/32 --dport {}",
        svc.vip, port.port
    );
    let _ = writeln!(
        rules,
        "-A KUBE-SERVICES -m comment --comment \"{name} cluster IP\" {matches} -j {svc_chain}"
    );
    let _ = writeln!(
        rules,
        "-A {svc_chain} -m comment --comment \"{name} cluster IP\" {matches} ! -s {cluster_cidr} -j KUBE-MARK-MASQ"
    );
    if let Some(node_port) = port.node_port {
        let ext_chain = ext_chain(svc, port);
        let _ = writeln!(chains, ":{ext_chain} - [0:0]");
        let _ = writeln!(
            rules,
            "-A KUBE-NODEPORTS -m comment --comment {name} -m {proto} -p {proto} --dport {node_port} -j {ext_chain}\n\
             -A {ext_chain} -m comment --comment \"masquerade traffic for {name} external destinations\" -j KUBE-MARK-MASQ\n\
             -A {ext_chain} -j {svc_chain}"
        );
    }
    let count = svc.endpoints.len();
    for (i, endpoint) in svc.endpoints.iter().enumerate() {
        let address = format!("{}:{}", endpoint.ip, port.target_port);
        let sep_chain = sep_chain(svc, port, &address);
        let _ = writeln!(chains, ":{sep_chain} - [0:0]");
        let comment = |text: &str| {
            if large {
                String::new()
            } else {
                format!("-m comment --comment {text} ")
            }
        };
        // Endpoint i of n is taken with probability 1/(n-i) of what reaches
        // it, so each is equally likely; the last takes the rest.
        let statistic = if i + 1 < count {
            format!(
                "-m statistic --mode random --probability {:.10} ",
                1.0 / (count - i) as f64
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            rules,
            "-A {svc_chain} {}{statistic}-j {sep_chain}",
            comment(&format!("\"{name} -> {address}\""))
        );
        let _ = writeln!(
            rules,
            "-A {sep_chain} {}-s {}/32 -j KUBE-MARK-MASQ\n\
             -A {sep_chain} {}-m {proto} -p {proto} -j DNAT --to-destination {address}",
            comment(&name),
            endpoint.ip,
            comment(&name),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::bench::catalog::{Endpoint, Plane, Protocol, scale_service};

    fn web() -> Svc {
        Svc {
            name: "web".into(),
            vip: Ipv4Addr::new(10, 100, 0, 10),
            ports: vec![SvcPort {
                name: "http",
                protocol: Protocol::Tcp,
                port: 80,
                target_port: 8080,
                node_port: Some(30081),
            }],
            endpoints: (2..5)
                .map(|i| Endpoint {
                    ip: Ipv4Addr::new(10, 244, 2, i),
                    node: 2,
                })
                .collect(),
        }
    }

    fn rules_of<'a>(text: &'a str, chain: &str) -> Vec<&'a str> {
        let prefix = format!("-A {chain} ");
        text.lines().filter(|l| l.starts_with(&prefix)).collect()
    }

    #[test]
    fn chain_names_hash_like_kube_proxy() {
        // kube-proxy's own test fixture: ns1/svc1:p80 over TCP is
        // KUBE-SVC-XPGD46QRK7WJZT7O.
        assert_eq!(hash("ns1/svc1:p80tcp", 16), "XPGD46QRK7WJZT7O");
        let svc = web();
        let chain = svc_chain(&svc, &svc.ports[0]);
        assert_eq!(chain, format!("KUBE-SVC-{}", hash("bench/web:httptcp", 16)));
    }

    #[test]
    fn cluster_ip_jumps_to_a_probability_cascade_of_endpoint_chains() {
        let svc = web();
        let port = svc.ports[0];
        let text = restore_input(std::slice::from_ref(&svc), "10.244.0.0/16");
        let svc_chain = svc_chain(&svc, &port);
        let services = rules_of(&text, "KUBE-SERVICES");
        assert_eq!(services.len(), 2);
        assert!(services[0].contains("-d 10.100.0.10/32 --dport 80"));
        assert!(services[0].ends_with(&format!("-j {svc_chain}")));
        assert!(services[1].contains("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"));

        let cascade = rules_of(&text, &svc_chain);
        assert_eq!(cascade.len(), 4, "{cascade:#?}");
        assert!(cascade[0].contains("! -s 10.244.0.0/16 -j KUBE-MARK-MASQ"));
        assert!(cascade[1].contains("--probability 0.3333333333 -j KUBE-SEP-"));
        assert!(cascade[2].contains("--probability 0.5000000000 -j KUBE-SEP-"));
        assert!(!cascade[3].contains("statistic"));
        let sep = cascade[3].rsplit(' ').next().unwrap();
        assert_eq!(
            rules_of(&text, sep),
            [
                format!(
                    "-A {sep} -m comment --comment bench/web:http -s 10.244.2.4/32 -j KUBE-MARK-MASQ"
                ),
                format!(
                    "-A {sep} -m comment --comment bench/web:http -m tcp -p tcp -j DNAT --to-destination 10.244.2.4:8080"
                ),
            ]
        );
    }

    #[test]
    fn node_ports_masquerade_then_reuse_the_service_chain() {
        let svc = web();
        let text = restore_input(std::slice::from_ref(&svc), "10.244.0.0/16");
        let nodeports = rules_of(&text, "KUBE-NODEPORTS");
        assert_eq!(nodeports.len(), 1);
        assert!(nodeports[0].contains("-m tcp -p tcp --dport 30081 -j KUBE-EXT-"));
        let ext = nodeports[0].rsplit(' ').next().unwrap();
        let ext_rules = rules_of(&text, ext);
        assert!(ext_rules[0].ends_with("-j KUBE-MARK-MASQ"));
        assert!(ext_rules[1].ends_with(&format!("-j {}", svc_chain(&svc, &svc.ports[0]))));
        assert!(rules_of(&text, "KUBE-POSTROUTING")[2].ends_with("-j MASQUERADE --random-fully"));
    }

    #[test]
    fn every_chain_jumped_to_is_declared_once_and_large_sets_drop_comments() {
        let pool: Vec<Endpoint> = (2..12)
            .map(|i| Endpoint {
                ip: Ipv4Addr::new(10, 244, 2, i),
                node: 2,
            })
            .collect();
        let services: Vec<Svc> = (0..300)
            .map(|i| scale_service(Plane::Iptables, i, &pool))
            .collect();
        let text = restore_input(&services, "10.244.0.0/16");
        // Chain names are per table: check each on its own.
        for table in text.split("COMMIT\n").filter(|t| !t.is_empty()) {
            let declared: Vec<&str> = table
                .lines()
                .filter_map(|l| l.strip_prefix(':')?.split(' ').next())
                .collect();
            let unique: std::collections::BTreeSet<&str> = declared.iter().copied().collect();
            assert_eq!(unique.len(), declared.len());
            for target in table.lines().filter_map(|l| l.split(" -j ").nth(1)) {
                let target = target.split(' ').next().unwrap();
                if target.starts_with("KUBE-") {
                    assert!(unique.contains(target), "{target} is not declared");
                }
            }
        }
        let sep_rule = text
            .lines()
            .find(|l| l.starts_with("-A KUBE-SEP-"))
            .unwrap();
        assert!(!sep_rule.contains("comment"), "{sep_rule}");
        assert!(text.ends_with("COMMIT\n"));
    }

    #[test]
    fn the_filter_table_checks_forwarded_packets_like_kube_proxy() {
        let text = restore_input(&[web()], "10.244.0.0/16");
        let filter = &text[text.find("*filter\n").expect("a filter table")..];
        assert!(filter.contains(
            "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n"
        ));
        assert_eq!(rules_of(filter, "KUBE-FORWARD").len(), 3);
        assert!(rules_of(filter, "KUBE-FORWARD")[0].ends_with("--ctstate INVALID -j DROP"));
        assert_eq!(text.matches("COMMIT\n").count(), 2);
    }
}

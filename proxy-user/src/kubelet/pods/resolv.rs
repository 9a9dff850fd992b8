//! A pod's /etc/resolv.conf, as the kubelet writes it from the pod's
//! `dnsPolicy` and `dnsConfig`.
//!
//! - `ClusterFirst` (the default) and `ClusterFirstWithHostNet`: the
//!   cluster DNS server (`--cluster-dns`), the namespace's search path and
//!   `ndots:5`.
//! - `Default`: the node's resolvers. skiff's pods have no route to
//!   anything but the cluster, so the agent does not copy the node's file:
//!   such a pod gets no nameserver (only what its `dnsConfig` adds).
//! - `None`: only the pod's `dnsConfig`.
//!
//! `dnsConfig` is merged in as the kubelet merges it: its nameservers and
//! searches are appended (each kept once), its options replace options of
//! the same name. The kubelet's limits apply: 3 nameservers, 32 searches.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Pod, PodDNSConfig};

/// The kubelet's limits on what resolv.conf holds (glibc reads no more).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// The node's cluster DNS settings (the agent's `--cluster-dns`,
/// `--cluster-domain`).
#[derive(Debug, Clone)]
pub struct Dns {
    pub server: Option<Ipv4Addr>,
    pub domain: String,
}

/// What resolv.conf says.
#[derive(Debug, Default, PartialEq, Eq)]
struct ResolvConf {
    nameservers: Vec<String>,
    searches: Vec<String>,
    /// `(name, value)`.
    options: Vec<(String, Option<String>)>,
}

/// The resolv.conf of `pod` in `namespace`.
pub fn resolv_conf(pod: &Pod, namespace: &str, dns: &Dns) -> String {
    let spec = pod.spec.as_ref();
    let policy = spec.and_then(|spec| spec.dns_policy.as_deref());
    let mut conf = match policy {
        Some("Default" | "None") => ResolvConf::default(),
        // ClusterFirst, ClusterFirstWithHostNet (the API refuses others).
        _ => cluster_first(namespace, dns),
    };
    if let Some(config) = spec.and_then(|spec| spec.dns_config.as_ref()) {
        merge(&mut conf, config);
    }
    conf.nameservers.truncate(MAX_NAMESERVERS);
    conf.searches.truncate(MAX_SEARCHES);
    render(&conf)
}

/// ClusterFirst: the cluster's server, the namespace's search path and
/// ndots:5. Without `--cluster-dns` no nameserver is written: the node's
/// resolvers are not reachable from pods and would only make lookups wait.
fn cluster_first(namespace: &str, dns: &Dns) -> ResolvConf {
    let domain = &dns.domain;
    ResolvConf {
        nameservers: dns.server.iter().map(ToString::to_string).collect(),
        searches: vec![
            format!("{namespace}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.clone(),
        ],
        options: vec![("ndots".into(), Some("5".into()))],
    }
}

fn merge(conf: &mut ResolvConf, config: &PodDNSConfig) {
    for server in config.nameservers.iter().flatten() {
        if !conf.nameservers.contains(server) {
            conf.nameservers.push(server.clone());
        }
    }
    for search in config.searches.iter().flatten() {
        if !conf.searches.contains(search) {
            conf.searches.push(search.clone());
        }
    }
    for option in config.options.iter().flatten() {
        let Some(name) = option.name.as_ref().filter(|name| !name.is_empty()) else {
            continue;
        };
        let value = option.value.clone();
        match conf.options.iter_mut().find(|(known, _)| known == name) {
            Some(existing) => existing.1 = value,
            None => conf.options.push((name.clone(), value)),
        }
    }
}

fn render(conf: &ResolvConf) -> String {
    let mut text = String::new();
    for server in &conf.nameservers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !conf.searches.is_empty() {
        text.push_str(&format!("search {}\n", conf.searches.join(" ")));
    }
    if !conf.options.is_empty() {
        let options: Vec<String> = conf
            .options
            .iter()
            .map(|(name, value)| match value {
                Some(value) => format!("{name}:{value}"),
                None => name.clone(),
            })
            .collect();
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dns() -> Dns {
        Dns {
            server: Some(Ipv4Addr::new(10, 96, 0, 10)),
            domain: "cluster.local".into(),
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({ "spec": spec })).unwrap()
    }

    #[test]
    fn cluster_first_is_the_default() {
        let conf = resolv_conf(&pod(json!({ "containers": [] })), "shop", &dns());
        assert_eq!(
            conf,
            "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
        let with_host_net =
            pod(json!({ "containers": [], "dnsPolicy": "ClusterFirstWithHostNet" }));
        assert_eq!(resolv_conf(&with_host_net, "shop", &dns()), conf);
        let without_server = Dns {
            server: None,
            ..dns()
        };
        assert!(!resolv_conf(&pod(json!({})), "shop", &without_server).contains("nameserver"));
    }

    #[test]
    fn dns_config_is_merged_as_the_kubelet_does() {
        let spec = json!({
            "dnsConfig": {
                "nameservers": ["10.96.0.10", "1.2.3.4"],
                "searches": ["svc.cluster.local", "example.com"],
                "options": [{ "name": "ndots", "value": "2" }, { "name": "edns0" }],
            },
        });
        assert_eq!(
            resolv_conf(&pod(spec), "shop", &dns()),
            "nameserver 10.96.0.10\nnameserver 1.2.3.4\n\
             search shop.svc.cluster.local svc.cluster.local cluster.local example.com\n\
             options ndots:2 edns0\n"
        );
    }

    #[test]
    fn none_takes_only_the_dns_config_and_default_no_cluster_server() {
        let none = json!({
            "dnsPolicy": "None",
            "dnsConfig": {
                "nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"],
                "searches": ["a.example"],
            },
        });
        assert_eq!(
            resolv_conf(&pod(none), "shop", &dns()),
            "nameserver 1.1.1.1\nnameserver 2.2.2.2\nnameserver 3.3.3.3\nsearch a.example\n"
        );
        let default = pod(json!({ "dnsPolicy": "Default" }));
        assert_eq!(resolv_conf(&default, "shop", &dns()), "");
    }
}

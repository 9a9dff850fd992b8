//! What a query name means to cluster DNS, read off its labels (lower
//! case, as hickory hands queries over): a name in the cluster domain
//! (`<service>.<namespace>.svc.<domain>` and the rest of the Kubernetes
//! DNS specification's schema), a reverse name (`d.c.b.a.in-addr.arpa`),
//! or a name of the outside world.

use std::net::Ipv4Addr;

/// A query name, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryName<'a> {
    /// A name in the cluster domain.
    Cluster(ClusterName<'a>),
    /// `d.c.b.a.in-addr.arpa.`: who has address `a.b.c.d`.
    Reverse(Ipv4Addr),
    /// Any other name.
    Outside,
}

/// A name in the cluster domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterName<'a> {
    /// The domain itself.
    Apex,
    /// `svc.<domain>` and `pod.<domain>`: names with names below them.
    Branch,
    /// `<namespace>.svc.<domain>`.
    ServiceNamespace(&'a str),
    /// `<namespace>.pod.<domain>`: any namespace, as CoreDNS's
    /// `pods insecure` answers.
    PodNamespace,
    /// `<service>.<namespace>.svc.<domain>`.
    Service {
        namespace: &'a str,
        service: &'a str,
    },
    /// `<endpoint>.<service>.<namespace>.svc.<domain>`: a headless
    /// Service's endpoint by its hostname or dashed address.
    Endpoint {
        namespace: &'a str,
        service: &'a str,
        endpoint: &'a str,
    },
    /// `_<protocol>.<service>.<namespace>.svc.<domain>`.
    SrvProtocol {
        namespace: &'a str,
        service: &'a str,
        protocol: &'a str,
    },
    /// `_<port>._<protocol>.<service>.<namespace>.svc.<domain>`.
    Srv {
        namespace: &'a str,
        service: &'a str,
        port: &'a str,
        protocol: &'a str,
    },
    /// `<a-b-c-d>.<namespace>.pod.<domain>`.
    Pod(Ipv4Addr),
    /// Nothing of the schema: NXDOMAIN.
    Unknown,
}

/// Classifies the name whose labels are `labels` (lower case, leftmost
/// first, without the root) against the cluster domain's labels.
pub fn classify<'a>(labels: &[&'a str], domain: &[&str]) -> QueryName<'a> {
    if let Some(ip) = reverse(labels) {
        return QueryName::Reverse(ip);
    }
    let Some(relative) = labels
        .len()
        .checked_sub(domain.len())
        .filter(|&split| labels[split..] == *domain)
        .map(|split| &labels[..split])
    else {
        return QueryName::Outside;
    };
    QueryName::Cluster(in_cluster(relative))
}

fn in_cluster<'a>(relative: &[&'a str]) -> ClusterName<'a> {
    match relative {
        [] => ClusterName::Apex,
        ["svc" | "pod"] => ClusterName::Branch,
        [namespace, "svc"] => ClusterName::ServiceNamespace(namespace),
        [_, "pod"] => ClusterName::PodNamespace,
        [service, namespace, "svc"] => ClusterName::Service { namespace, service },
        [first, service, namespace, "svc"] => match first.strip_prefix('_') {
            Some(protocol) => ClusterName::SrvProtocol {
                namespace,
                service,
                protocol,
            },
            None => ClusterName::Endpoint {
                namespace,
                service,
                endpoint: first,
            },
        },
        [port, protocol, service, namespace, "svc"] => {
            match (port.strip_prefix('_'), protocol.strip_prefix('_')) {
                (Some(port), Some(protocol)) => ClusterName::Srv {
                    namespace,
                    service,
                    port,
                    protocol,
                },
                _ => ClusterName::Unknown,
            }
        }
        [dashed, _, "pod"] => undashed(dashed).map_or(ClusterName::Unknown, ClusterName::Pod),
        _ => ClusterName::Unknown,
    }
}

/// `10-244-1-5` as `10.244.1.5`.
fn undashed(label: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = label.split('-');
    for octet in &mut octets {
        *octet = parse_octet(parts.next()?)?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

/// A decimal octet without leading zeros or signs.
fn parse_octet(text: &str) -> Option<u8> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// The address a full IPv4 reverse name stands for.
fn reverse(labels: &[&str]) -> Option<Ipv4Addr> {
    let [d, c, b, a, "in-addr", "arpa"] = labels else {
        return None;
    };
    Some(Ipv4Addr::new(
        parse_octet(a)?,
        parse_octet(b)?,
        parse_octet(c)?,
        parse_octet(d)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &[&str] = &["cluster", "local"];

    fn of(name: &str) -> QueryName<'_> {
        let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
        // The labels borrow from `name`; the classification only from them.
        classify(&labels, DOMAIN)
    }

    #[test]
    fn the_schema_is_read_from_the_right() {
        assert_eq!(of("cluster.local."), QueryName::Cluster(ClusterName::Apex));
        assert_eq!(
            of("svc.cluster.local."),
            QueryName::Cluster(ClusterName::Branch)
        );
        assert_eq!(
            of("web.shop.svc.cluster.local."),
            QueryName::Cluster(ClusterName::Service {
                namespace: "shop",
                service: "web"
            })
        );
        assert_eq!(
            of("web-0.nginx.default.svc.cluster.local."),
            QueryName::Cluster(ClusterName::Endpoint {
                namespace: "default",
                service: "nginx",
                endpoint: "web-0"
            })
        );
        assert_eq!(
            of("_http._tcp.web.shop.svc.cluster.local."),
            QueryName::Cluster(ClusterName::Srv {
                namespace: "shop",
                service: "web",
                port: "http",
                protocol: "tcp"
            })
        );
        assert_eq!(
            of("_tcp.web.shop.svc.cluster.local."),
            QueryName::Cluster(ClusterName::SrvProtocol {
                namespace: "shop",
                service: "web",
                protocol: "tcp"
            })
        );
        assert_eq!(
            of("10-244-1-5.shop.pod.cluster.local."),
            QueryName::Cluster(ClusterName::Pod(Ipv4Addr::new(10, 244, 1, 5)))
        );
        assert_eq!(
            of("5.1.244.10.in-addr.arpa."),
            QueryName::Reverse(Ipv4Addr::new(10, 244, 1, 5))
        );
    }

    #[test]
    fn names_off_the_schema_are_unknown_or_outside() {
        for unknown in [
            "foo.cluster.local.",
            "a.b.c.d.e.svc.cluster.local.",
            "http._tcp.web.shop.svc.cluster.local.",
            "10-244-1.shop.pod.cluster.local.",
            "10-244-01-5.shop.pod.cluster.local.",
            "300-244-1-5.shop.pod.cluster.local.",
        ] {
            assert_eq!(
                of(unknown),
                QueryName::Cluster(ClusterName::Unknown),
                "{unknown}"
            );
        }
        assert_eq!(of("example.com."), QueryName::Outside);
        assert_eq!(of("local."), QueryName::Outside);
        assert_eq!(of("1.244.10.in-addr.arpa."), QueryName::Outside);
    }
}

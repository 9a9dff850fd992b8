//! The answer to one question about the cluster domain or a cluster
//! address, as CoreDNS's kubernetes plugin gives it: the records, or
//! NODATA for a name that exists without records of the asked type, or
//! NXDOMAIN for a name that does not exist; a reverse name of an address
//! the cluster does not own is not ours to answer.

use std::net::Ipv4Addr;

use hickory_proto::rr::rdata::{A, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::index::{DnsEndpoint, DnsKind, DnsService, Index, NamedPort};
use super::names::{ClusterName, QueryName, classify};
use crate::proxy::cluster::protocol::Protocol;

/// Seconds answers may be cached: CoreDNS's kubernetes plugin default, so a
/// change is seen within a few seconds however clients cache.
pub const TTL: u32 = 5;

/// What cluster DNS answers to one question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Records for the answer section, and for the additional section (the
    /// addresses of SRV targets).
    Records {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// The name exists, without records of the asked type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// Not a name of the cluster: for the upstream servers, if any.
    NotOurs,
}

/// The cluster domain: its name and labels.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The domain as a fully qualified name (`cluster.local.`).
    pub origin: Name,
    labels: Vec<String>,
}

impl Zone {
    /// `domain` is a valid lower-case DNS name (the agent's flag checks it).
    pub fn new(domain: &str) -> Result<Self, hickory_proto::ProtoError> {
        let mut origin = Name::from_ascii(domain)?;
        origin.set_fqdn(true);
        Ok(Self {
            origin,
            labels: domain.split('.').map(str::to_owned).collect(),
        })
    }

    /// The SOA record the zone's negative answers carry: CoreDNS's, whose
    /// minimum (the negative caching time) is the TTL.
    pub fn soa(&self, serial: u32) -> Record {
        let name = |prefix: &str| {
            Name::from_ascii(prefix)
                .and_then(|prefix| prefix.append_domain(&self.origin))
                .expect("a label before a valid domain is a valid name")
        };
        let soa = SOA::new(
            name("ns.dns"),
            name("hostmaster"),
            serial,
            7200,
            1800,
            86400,
            TTL,
        );
        Record::from_rdata(self.origin.clone(), TTL, RData::SOA(soa))
    }

    /// `<labels>.<domain>.`, or `None` when the labels make no valid name.
    fn name(&self, labels: &[&str]) -> Option<Name> {
        Name::from_labels(labels.iter().map(|label| label.as_bytes()))
            .and_then(|name| name.append_domain(&self.origin))
            .ok()
    }

    /// Answers the question `(name, kind)` from `index`. `name` is the
    /// query name as asked (answers carry it as their owner, case and all).
    pub fn answer(&self, index: &Index, name: &Name, kind: RecordType) -> Answer {
        let lower = name.to_lowercase();
        let labels: Option<Vec<&str>> = lower
            .iter()
            .map(|label| std::str::from_utf8(label).ok())
            .collect();
        let Some(labels) = labels else {
            return match self.origin.zone_of(&lower) {
                true => Answer::NxDomain,
                false => Answer::NotOurs,
            };
        };
        let domain: Vec<&str> = self.labels.iter().map(String::as_str).collect();
        let owner = name.clone();
        let records = |rdata: Vec<RData>| Answer::Records {
            answers: rdata
                .into_iter()
                .map(|rdata| Record::from_rdata(owner.clone(), TTL, rdata))
                .collect(),
            additionals: Vec::new(),
        };
        match classify(&labels, &domain) {
            QueryName::Outside => Answer::NotOurs,
            QueryName::Reverse(ip) => {
                let targets: Vec<RData> = index
                    .owners(ip)
                    .iter()
                    .filter_map(|owner| {
                        let service = [&*owner.service.name, &*owner.service.namespace, "svc"];
                        match &owner.endpoint {
                            Some(endpoint) => {
                                let mut labels = vec![endpoint.as_str()];
                                labels.extend(service);
                                self.name(&labels)
                            }
                            None => self.name(&service),
                        }
                    })
                    .map(|target| RData::PTR(PTR(target)))
                    .collect();
                match (targets.is_empty(), kind) {
                    (true, _) => Answer::NotOurs,
                    (false, RecordType::PTR | RecordType::ANY) => records(targets),
                    (false, _) => Answer::NoData,
                }
            }
            QueryName::Cluster(cluster) => self.cluster(index, cluster, kind, records),
        }
    }

    fn cluster(
        &self,
        index: &Index,
        name: ClusterName<'_>,
        kind: RecordType,
        records: impl Fn(Vec<RData>) -> Answer,
    ) -> Answer {
        let addresses = |ips: &mut dyn Iterator<Item = Ipv4Addr>| match kind {
            RecordType::A | RecordType::ANY => {
                let rdata: Vec<RData> = ips.map(|ip| RData::A(A(ip))).collect();
                match rdata.is_empty() {
                    true => Answer::NoData,
                    false => records(rdata),
                }
            }
            _ => Answer::NoData,
        };
        match name {
            ClusterName::Apex => match kind {
                RecordType::SOA => Answer::Records {
                    answers: vec![self.soa(index.serial())],
                    additionals: Vec::new(),
                },
                _ => Answer::NoData,
            },
            ClusterName::Branch | ClusterName::PodNamespace => Answer::NoData,
            ClusterName::ServiceNamespace(namespace) => match index.has_namespace(namespace) {
                true => Answer::NoData,
                false => Answer::NxDomain,
            },
            ClusterName::Pod(ip) => addresses(&mut std::iter::once(ip)),
            ClusterName::Service { namespace, service } => {
                let Some(view) = index.service(namespace, service) else {
                    return Answer::NxDomain;
                };
                match &view.kind {
                    DnsKind::ExternalName(target) => {
                        let target = target.as_deref().and_then(|target| {
                            let mut name = Name::from_ascii(target).ok()?;
                            name.set_fqdn(true);
                            Some(name)
                        });
                        match target {
                            Some(target) => records(vec![RData::CNAME(CNAME(target))]),
                            None => Answer::NoData,
                        }
                    }
                    DnsKind::ClusterIp(ips) => addresses(&mut ips.iter().copied()),
                    DnsKind::Headless => addresses(&mut view.endpoints.iter().map(|e| e.ip)),
                }
            }
            ClusterName::Endpoint {
                namespace,
                service,
                endpoint,
            } => {
                let matching: Vec<Ipv4Addr> = index
                    .service(namespace, service)
                    .into_iter()
                    .flat_map(|view| view.endpoints.iter())
                    .filter(|candidate| candidate.label() == endpoint)
                    .map(|candidate| candidate.ip)
                    .collect();
                match matching.is_empty() {
                    true => Answer::NxDomain,
                    false => addresses(&mut matching.into_iter()),
                }
            }
            ClusterName::SrvProtocol {
                namespace,
                service,
                protocol,
            } => {
                let exists = index.service(namespace, service).is_some_and(|view| {
                    srv_ports(view).any(|port| label(port.protocol) == protocol)
                });
                match exists {
                    true => Answer::NoData,
                    false => Answer::NxDomain,
                }
            }
            ClusterName::Srv {
                namespace,
                service,
                port,
                protocol,
            } => {
                let Some(view) = index.service(namespace, service) else {
                    return Answer::NxDomain;
                };
                let (targets, additionals) = self.srv(view, namespace, service, port, protocol);
                match (targets.is_empty(), kind) {
                    (true, _) => Answer::NxDomain,
                    (false, RecordType::SRV | RecordType::ANY) => match records(targets) {
                        Answer::Records { answers, .. } => Answer::Records {
                            answers,
                            additionals,
                        },
                        other => other,
                    },
                    (false, _) => Answer::NoData,
                }
            }
            ClusterName::Unknown => Answer::NxDomain,
        }
    }

    /// The SRV records of `_<port>._<protocol>` of a Service, and the
    /// address records of their targets. A ClusterIP Service has one, to
    /// the Service's name at the Service's port; a headless one has one
    /// per ready endpoint, to the endpoint's name at the endpoint's port.
    fn srv(
        &self,
        view: &DnsService,
        namespace: &str,
        service: &str,
        port: &str,
        protocol: &str,
    ) -> (Vec<RData>, Vec<Record>) {
        let matches = |named: &NamedPort| &*named.name == port && label(named.protocol) == protocol;
        let mut targets: Vec<(Name, u16, Vec<Ipv4Addr>)> = Vec::new();
        match &view.kind {
            DnsKind::ClusterIp(ips) => {
                if let (Some(named), Some(name)) = (
                    view.ports.iter().find(|named| matches(named)),
                    self.name(&[service, namespace, "svc"]),
                ) {
                    targets.push((name, named.port, ips.to_vec()));
                }
            }
            DnsKind::Headless => {
                for endpoint in view.endpoints.iter() {
                    let Some(named) = endpoint.ports.iter().find(|named| matches(named)) else {
                        continue;
                    };
                    if let Some(name) = self.endpoint_name(endpoint, namespace, service) {
                        targets.push((name, named.port, vec![endpoint.ip]));
                    }
                }
            }
            DnsKind::ExternalName(_) => {}
        }
        // CoreDNS's weights: the records share 100 evenly.
        let weight = u16::try_from(100 / targets.len().max(1)).unwrap_or(1);
        let mut additionals = Vec::new();
        let srv = targets
            .into_iter()
            .map(|(name, port, ips)| {
                additionals.extend(
                    ips.into_iter()
                        .map(|ip| Record::from_rdata(name.clone(), TTL, RData::A(A(ip)))),
                );
                RData::SRV(SRV::new(0, weight, port, name))
            })
            .collect();
        (srv, additionals)
    }

    fn endpoint_name(
        &self,
        endpoint: &DnsEndpoint,
        namespace: &str,
        service: &str,
    ) -> Option<Name> {
        self.name(&[&endpoint.label(), service, namespace, "svc"])
    }
}

/// The ports SRV names may name: the Service's for a ClusterIP Service,
/// its endpoints' for a headless one.
fn srv_ports(view: &DnsService) -> Box<dyn Iterator<Item = &NamedPort> + '_> {
    match view.kind {
        DnsKind::Headless => Box::new(view.endpoints.iter().flat_map(|e| e.ports.iter())),
        _ => Box::new(view.ports.iter()),
    }
}

/// The protocol's label in SRV names, without its underscore.
fn label(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

#[cfg(test)]
mod tests;

//! What cluster DNS answers from: each Service's DNS view (its cluster IPs,
//! or its ready endpoints when headless, or its ExternalName), and the
//! reverse map from addresses to names. Built from the records the
//! datapath's cache already holds, Service by Service as the sync loop
//! applies changes, and shared with the server behind a lock that queries
//! hold only while they look names up.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use crate::proxy::cluster::protocol::Protocol;
use crate::proxy::cluster::records::{ServiceRecord, ServiceType, SliceRecord, Usable};
use crate::proxy::cluster::service_ref::ServiceRef;
use crate::proxy::cluster::state::ClusterState;

/// A Service as DNS sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsService {
    pub kind: DnsKind,
    /// The Service's named ports (SRV records of a ClusterIP Service).
    pub ports: Box<[NamedPort]>,
    /// The ready endpoints of a headless Service; empty otherwise.
    pub endpoints: Box<[DnsEndpoint]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsKind {
    /// A ClusterIP (or NodePort, LoadBalancer) Service: its IPv4 cluster
    /// addresses, none while not allocated.
    ClusterIp(Box<[Ipv4Addr]>),
    /// `clusterIP: None`: the name stands for the ready endpoints.
    Headless,
    /// An alias: the name is a CNAME to this name; `None` when the Service
    /// names none.
    ExternalName(Option<Box<str>>),
}

/// A named port: `_<name>._<protocol>` in an SRV name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    pub name: Arc<str>,
    pub protocol: Protocol,
    pub port: u16,
}

/// A ready endpoint address of a headless Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsEndpoint {
    pub ip: Ipv4Addr,
    /// The endpoint's `hostname` (a StatefulSet pod's name), if it has one.
    pub hostname: Option<Box<str>>,
    /// The named ports of the EndpointSlice it is in, shared by the slice's
    /// endpoints.
    pub ports: Arc<[NamedPort]>,
}

impl DnsEndpoint {
    /// The first label of the endpoint's own name: its hostname, or its
    /// address with dashes (`10-244-1-5`), as CoreDNS names endpoints.
    pub fn label(&self) -> String {
        match &self.hostname {
            Some(hostname) => hostname.to_string(),
            None => dashed(self.ip),
        }
    }
}

/// `10.244.1.5` as `10-244-1-5`.
pub fn dashed(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{a}-{b}-{c}-{d}")
}

impl DnsService {
    /// The DNS view of `service` with the EndpointSlices labelled for it.
    pub fn of(service: &ServiceRecord, slices: &[&SliceRecord]) -> Self {
        let ports = service
            .ports
            .iter()
            .filter(|port| !port.name.is_empty())
            .filter_map(|port| {
                Some(NamedPort {
                    name: port.name.clone(),
                    protocol: port.protocol,
                    port: port.port?,
                })
            })
            .collect();
        let kind = match (service.type_, service.headless) {
            (ServiceType::ExternalName, _) => DnsKind::ExternalName(service.external_name.clone()),
            (_, true) => DnsKind::Headless,
            (_, false) => DnsKind::ClusterIp(service.cluster_ips.clone()),
        };
        let endpoints = match kind {
            DnsKind::Headless => ready_endpoints(slices),
            _ => Box::default(),
        };
        Self {
            kind,
            ports,
            endpoints,
        }
    }
}

/// The ready endpoints of `slices`, each address once.
fn ready_endpoints(slices: &[&SliceRecord]) -> Box<[DnsEndpoint]> {
    let mut endpoints: Vec<DnsEndpoint> = Vec::new();
    for slice in slices {
        let ports: Arc<[NamedPort]> = slice
            .ports
            .iter()
            .filter(|port| !port.name.is_empty())
            .filter_map(|port| {
                Some(NamedPort {
                    name: Arc::from(&*port.name),
                    protocol: port.protocol?,
                    port: port.port?,
                })
            })
            .collect();
        for endpoint in &slice.endpoints {
            // Cluster DNS answers A records only: IPv6 slices' addresses
            // have no record.
            let IpAddr::V4(ip) = endpoint.ip else {
                continue;
            };
            if endpoint.usable != Usable::Ready || endpoints.iter().any(|e| e.ip == ip) {
                continue;
            }
            endpoints.push(DnsEndpoint {
                ip,
                hostname: slice.hostname_of(endpoint).map(Into::into),
                ports: ports.clone(),
            });
        }
    }
    endpoints.into()
}

/// Who an address belongs to, for PTR answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub service: ServiceRef,
    /// The endpoint's label for a headless Service's endpoint; `None` for
    /// a cluster IP (the Service's own name).
    pub endpoint: Option<String>,
}

/// Every Service's DNS view, by namespace and name, and the owners of
/// each address.
#[derive(Debug, Default)]
pub struct Index {
    namespaces: HashMap<Arc<str>, HashMap<Arc<str>, DnsService>>,
    reverse: HashMap<Ipv4Addr, Vec<Owner>>,
    /// Bumped by every change: the zone's SOA serial.
    serial: u32,
}

impl Index {
    pub fn service(&self, namespace: &str, name: &str) -> Option<&DnsService> {
        self.namespaces.get(namespace)?.get(name)
    }

    /// Whether any Service is in `namespace`.
    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }

    /// The owners of `ip`: the Services it is a cluster IP of, and the
    /// headless Services it is a ready endpoint of.
    pub fn owners(&self, ip: Ipv4Addr) -> &[Owner] {
        self.reverse.get(&ip).map_or(&[], Vec::as_slice)
    }

    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Sets the DNS view of `svc`; `None` removes it.
    pub fn set(&mut self, svc: &ServiceRef, view: Option<DnsService>) {
        self.serial = self.serial.wrapping_add(1);
        let old = match &view {
            Some(view) => self
                .namespaces
                .entry(svc.namespace.clone())
                .or_default()
                .insert(svc.name.clone(), view.clone()),
            None => {
                let services = self.namespaces.get_mut(&*svc.namespace);
                let old = services.and_then(|services| services.remove(&*svc.name));
                if self
                    .namespaces
                    .get(&*svc.namespace)
                    .is_some_and(HashMap::is_empty)
                {
                    self.namespaces.remove(&*svc.namespace);
                }
                old
            }
        };
        if old == view {
            return;
        }
        if let Some(old) = old {
            for (ip, _) in addresses(&old) {
                if let Some(owners) = self.reverse.get_mut(&ip) {
                    owners.retain(|owner| owner.service != *svc);
                    if owners.is_empty() {
                        self.reverse.remove(&ip);
                    }
                }
            }
        }
        if let Some(view) = &view {
            for (ip, endpoint) in addresses(view) {
                self.reverse.entry(ip).or_default().push(Owner {
                    service: svc.clone(),
                    endpoint,
                });
            }
        }
    }
}

/// The addresses a Service's view answers PTR queries for, with the
/// endpoint label of each headless endpoint.
fn addresses(view: &DnsService) -> Vec<(Ipv4Addr, Option<String>)> {
    match &view.kind {
        DnsKind::ClusterIp(ips) => ips.iter().map(|&ip| (ip, None)).collect(),
        DnsKind::Headless => view
            .endpoints
            .iter()
            .map(|endpoint| (endpoint.ip, Some(endpoint.label())))
            .collect(),
        DnsKind::ExternalName(_) => Vec::new(),
    }
}

/// The index shared by the sync loop (the only writer) and the server.
#[derive(Clone, Debug, Default)]
pub struct SharedIndex(Arc<RwLock<Index>>);

impl SharedIndex {
    /// Brings the Services `touched` up to date with `state`.
    pub fn update<'a>(
        &self,
        state: &ClusterState,
        touched: impl IntoIterator<Item = &'a ServiceRef>,
    ) {
        // Views are built before the lock is taken: queries wait only for
        // the map updates.
        let views: Vec<(&ServiceRef, Option<DnsService>)> = touched
            .into_iter()
            .map(|svc| {
                let view = state
                    .service(svc)
                    .map(|service| DnsService::of(service, &state.slices_of(svc)));
                (svc, view)
            })
            .collect();
        let mut index = self.0.write().unwrap_or_else(PoisonError::into_inner);
        for (svc, view) in views {
            index.set(svc, view);
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
}

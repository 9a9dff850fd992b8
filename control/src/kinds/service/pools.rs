//! What a Service holds in the shared pools (its ClusterIPs, NodePorts,
//! health check NodePort and LoadBalancer ingress IPs): claimed in etcd
//! before the Service is written, given back when it no longer needs them.
//!
//! Claims are idempotent for their owner, so every write claims all that the
//! new object holds: a value written to etcd without the API (the demo
//! cluster does that) is then recorded the first time the API touches it.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use serde_json::{Value, json};
use tracing::{debug, warn};

use super::fields::{
    health_check_node_port, ingress, needs_health_check_node_port, needs_node_ports, node_port,
    ports, service_type,
};
use crate::alloc::{
    AllocError, CLUSTER_IPS, ClusterIpAllocator, IpAllocator, IpFamily, LOAD_BALANCER_IPS,
    LoadBalancerPools, NODE_PORTS, Owner, Pool, PortAllocator, PortPool, ServiceCidrs, record_key,
};
use crate::kinds::refusal::Refusal;
use crate::validation::{FieldError, Rendered, go_quote, go_string_slice};

/// The pools' configuration (kube-apiserver's `--service-cluster-ip-range`
/// and `--service-node-port-range`, plus skiff's LoadBalancer pool).
#[derive(Debug, Clone)]
pub struct ServiceNetwork {
    /// One range per family, the primary first.
    pub cluster_ip_ranges: ServiceCidrs,
    pub node_port_range: RangeInclusive<u16>,
    /// At most one per family. A LoadBalancer Service gets an ingress IP
    /// for each of its families that has a pool: without any, its status
    /// stays empty.
    pub load_balancer_pools: LoadBalancerPools,
}

impl Default for ServiceNetwork {
    fn default() -> Self {
        Self {
            cluster_ip_ranges: crate::alloc::DEFAULT_SERVICE_CIDR
                .parse()
                .expect("the default CIDR parses"),
            node_port_range: crate::alloc::DEFAULT_NODE_PORT_RANGE,
            load_balancer_pools: LoadBalancerPools::default(),
        }
    }
}

/// The allocators of the three pools.
#[derive(Clone)]
pub struct ServicePools {
    /// One per service range, the primary first.
    cluster_ips: Vec<ClusterIpAllocator>,
    node_ports: PortAllocator,
    /// One per configured family.
    load_balancer_ips: Vec<IpAllocator>,
}

/// The values one Service holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Holdings {
    /// Of either family.
    cluster_ips: BTreeSet<IpAddr>,
    /// NodePorts and the health check NodePort (one pool).
    node_ports: BTreeSet<u16>,
    /// Of either family.
    load_balancer_ips: BTreeSet<IpAddr>,
}

impl Holdings {
    /// What `service` (stored or about to be) holds.
    pub fn of(service: &Value) -> Self {
        let cluster_ips = if service_type(service) == "ExternalName" {
            BTreeSet::new()
        } else {
            requested_cluster_ips(service)
                .iter()
                .filter_map(|ip| ip.parse().ok())
                .collect()
        };
        let mut node_ports: BTreeSet<u16> = ports(service).iter().filter_map(node_port).collect();
        node_ports.extend(health_check_node_port(service));
        let load_balancer_ips = ingress(service)
            .iter()
            .filter_map(|ingress| ingress["ip"].as_str()?.parse().ok())
            .collect();
        Self {
            cluster_ips,
            node_ports,
            load_balancer_ips,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Holdings::default()
    }

    /// The keys of the allocation records of what `self` holds.
    pub fn record_keys(&self) -> Vec<String> {
        let cluster_ips = self
            .cluster_ips
            .iter()
            .map(|ip| record_key(CLUSTER_IPS, ip));
        let node_ports = self
            .node_ports
            .iter()
            .map(|port| record_key(NODE_PORTS, port));
        let load_balancer_ips = self
            .load_balancer_ips
            .iter()
            .map(|ip| record_key(LOAD_BALANCER_IPS, ip));
        cluster_ips
            .chain(node_ports)
            .chain(load_balancer_ips)
            .collect()
    }

    /// What `self` holds and `other` does not.
    pub fn without(&self, other: &Holdings) -> Holdings {
        Holdings {
            cluster_ips: &self.cluster_ips - &other.cluster_ips,
            node_ports: &self.node_ports - &other.node_ports,
            load_balancer_ips: &self.load_balancer_ips - &other.load_balancer_ips,
        }
    }
}

impl ServicePools {
    pub fn new(client: skiff_etcd::kv::Kv, network: &ServiceNetwork) -> Self {
        let node_ports =
            PortPool::new(network.node_port_range.clone()).expect("a non-empty NodePort range");
        Self {
            cluster_ips: network
                .cluster_ip_ranges
                .iter()
                .map(|cidr| ClusterIpAllocator::cluster_ips(client.clone(), cidr))
                .collect(),
            node_ports: PortAllocator::node_ports(client.clone(), node_ports),
            load_balancer_ips: network
                .load_balancer_pools
                .iter()
                .map(|cidr| IpAllocator::load_balancer_ips(client.clone(), cidr))
                .collect(),
        }
    }

    /// Claims what the validated `service` needs, filling in the values it
    /// leaves to the server. `old` is the stored Service on an update.
    /// Returns what this call took that `old` did not hold (to give back if
    /// the write fails); on error, gives that back itself.
    pub async fn claim(
        &self,
        old: Option<&Value>,
        service: &mut Value,
    ) -> Result<Holdings, Refusal> {
        let owner = owner(service);
        let held = old.map(Holdings::of).unwrap_or_default();
        let result = self.claim_all(&owner, service).await;
        let taken = Holdings::of(service).without(&held);
        match result {
            Ok(()) => Ok(taken),
            Err(failure) => {
                self.release(&owner, &taken).await;
                Err(failure.into())
            }
        }
    }

    /// Gives back what the write of `service` took (the write failed).
    pub async fn give_back(&self, service: &Value, taken: &Holdings) {
        self.release(&owner(service), taken).await;
    }

    /// Gives back what `old` held and `new` (its successor, or nothing after
    /// a delete) does not.
    pub async fn release_dropped(&self, old: &Value, new: Option<&Value>) {
        let kept = new.map(Holdings::of).unwrap_or_default();
        self.release(&owner(old), &Holdings::of(old).without(&kept))
            .await;
    }

    async fn claim_all(&self, owner: &Owner, service: &mut Value) -> Result<(), Failure> {
        let ty = service_type(service).to_owned();
        if ty != "ExternalName" {
            self.claim_cluster_ips(owner, service).await?;
        }
        if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
            let pick_missing = needs_node_ports(service);
            self.claim_node_ports(owner, service, pick_missing).await?;
        }
        if needs_health_check_node_port(service) {
            let path = "spec.healthCheckNodePort";
            let port = match health_check_node_port(service) {
                Some(port) => {
                    self.node_ports
                        .allocate_specific(port, owner)
                        .await
                        .map_err(|e| Failure::at(path, port.to_string(), e))?;
                    port
                }
                None => self
                    .node_ports
                    .allocate(owner)
                    .await
                    .map_err(Failure::Internal)?,
            };
            service["spec"]["healthCheckNodePort"] = json!(port);
        }
        if ty == "LoadBalancer" && !self.load_balancer_ips.is_empty() {
            self.claim_load_balancer_ips(owner, service).await?;
        }
        Ok(())
    }

    /// One ClusterIP per family of `ipFamilies` (completed by
    /// `ip_families`): the one `clusterIPs` names at the same index, else
    /// any. Headless Services get none.
    async fn claim_cluster_ips(&self, owner: &Owner, service: &mut Value) -> Result<(), Failure> {
        let requested = requested_cluster_ips(service);
        let spec = &mut service["spec"];
        if requested.first().is_some_and(|ip| ip == "None") {
            return Ok(());
        }
        let families = families_of(spec);
        let mut cluster_ips = Vec::new();
        for (i, family) in families.into_iter().enumerate() {
            let Some(pool) = self.pool_of(family) else {
                return Err(Failure::Internal(AllocError::NotConfigured { family }));
            };
            let ip = match requested.get(i).filter(|ip| !ip.is_empty()) {
                Some(ip) => {
                    let failure = |error| Failure::cluster_ip(ip, &requested, error);
                    let parsed: IpAddr = ip.parse().map_err(|_| {
                        failure(AllocError::NotInRange {
                            what: "IP",
                            value: ip.clone(),
                            range: pool.pool().describe(),
                        })
                    })?;
                    pool.allocate_specific(parsed, owner)
                        .await
                        .map_err(failure)?;
                    parsed
                }
                None => pool.allocate(owner).await.map_err(Failure::Internal)?,
            };
            cluster_ips.push(ip.to_string());
        }
        if let Some(first) = cluster_ips.first() {
            spec["clusterIP"] = json!(first);
            spec["clusterIPs"] = json!(cluster_ips);
        }
        Ok(())
    }

    fn pool_of(&self, family: IpFamily) -> Option<&ClusterIpAllocator> {
        self.cluster_ips
            .iter()
            .find(|pool| pool.pool().family() == family)
    }

    fn load_balancer_pool_of(&self, family: IpFamily) -> Option<&IpAllocator> {
        self.load_balancer_ips
            .iter()
            .find(|pool| pool.pool().family() == family)
    }

    /// One ingress IP per family of `ipFamilies` that has a pool, in that
    /// order (as MetalLB and k3s's servicelb give a dual-stack Service):
    /// the one the status has, else `spec.loadBalancerIP` when it is of
    /// that family, else any free one. A family without a pool gets none,
    /// as a cluster without any pool gives none.
    async fn claim_load_balancer_ips(
        &self,
        owner: &Owner,
        service: &mut Value,
    ) -> Result<(), Failure> {
        let current: Vec<IpAddr> = ingress(service)
            .iter()
            .filter_map(|ingress| ingress["ip"].as_str()?.parse().ok())
            .collect();
        let requested = service["spec"]["loadBalancerIP"]
            .as_str()
            .filter(|ip| !ip.is_empty())
            .map(str::to_owned);
        let requested_ip = requested
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        let path = "spec.loadBalancerIP";
        let pools: Vec<&IpAllocator> = families_of(&service["spec"])
            .into_iter()
            .filter_map(|family| self.load_balancer_pool_of(family))
            .collect();
        if let Some(requested) = &requested
            && !pools
                .iter()
                .any(|pool| requested_ip.is_some_and(|ip| pool.pool().contains(ip)))
        {
            let ranges: Vec<String> = pools.iter().map(|pool| pool.pool().describe()).collect();
            return Err(Failure::at(
                path,
                go_quote(requested),
                AllocError::NotInRange {
                    what: "IP",
                    value: requested.clone(),
                    range: ranges.join(","),
                },
            ));
        }
        let mut ingress = Vec::new();
        for pool in pools {
            let kept = current.iter().copied().find(|ip| pool.pool().contains(*ip));
            let asked = requested_ip.filter(|ip| pool.pool().contains(*ip));
            let ip = match kept.or(asked) {
                Some(ip) => {
                    pool.allocate_specific(ip, owner)
                        .await
                        .map_err(|e| Failure::at(path, go_quote(&ip.to_string()), e))?;
                    ip
                }
                None => pool.allocate(owner).await.map_err(Failure::Internal)?,
            };
            ingress.push(json!({ "ip": ip.to_string(), "ipMode": "VIP" }));
        }
        service["status"]["loadBalancer"] = json!({ "ingress": ingress });
        Ok(())
    }

    /// Requested NodePorts are claimed as asked; with `pick_missing`, the
    /// others are picked at random, except that ports with the same number
    /// (TCP and UDP) share one, as kube-apiserver does.
    async fn claim_node_ports(
        &self,
        owner: &Owner,
        service: &mut Value,
        pick_missing: bool,
    ) -> Result<(), Failure> {
        let Some(ports) = service["spec"]["ports"].as_array_mut() else {
            return Ok(());
        };
        for i in 0..ports.len() {
            let path = format!("spec.ports[{i}].nodePort");
            if let Some(requested) = node_port(&ports[i]) {
                self.node_ports
                    .allocate_specific(requested, owner)
                    .await
                    .map_err(|e| Failure::at(&path, requested.to_string(), e))?;
                continue;
            }
            if !pick_missing {
                continue;
            }
            let number = &ports[i]["port"];
            let sibling = ports[..i]
                .iter()
                .find(|other| &other["port"] == number)
                .and_then(node_port);
            let port = match sibling {
                Some(port) => port,
                None => self
                    .node_ports
                    .allocate(owner)
                    .await
                    .map_err(Failure::Internal)?,
            };
            ports[i]["nodePort"] = json!(port);
        }
        Ok(())
    }

    /// Releases every value of `holdings`. The object is already written (or
    /// gone), so a failure is logged rather than returned: the value stays
    /// held until someone repairs it.
    async fn release(&self, owner: &Owner, holdings: &Holdings) {
        for &ip in &holdings.cluster_ips {
            // A family no longer configured has no records to release.
            if let Some(pool) = self.pool_of(IpFamily::of(ip)) {
                log_release(pool.release(ip, owner).await);
            }
        }
        for &port in &holdings.node_ports {
            log_release(self.node_ports.release(port, owner).await);
        }
        for &ip in &holdings.load_balancer_ips {
            if let Some(pool) = self.load_balancer_pool_of(IpFamily::of(ip)) {
                log_release(pool.release(ip, owner).await);
            }
        }
    }
}

/// `spec.ipFamilies` (completed by `ip_families` before any claim).
fn families_of(spec: &Value) -> Vec<IpFamily> {
    spec["ipFamilies"]
        .as_array()
        .map(|families| {
            families
                .iter()
                .filter_map(|family| IpFamily::parse(family.as_str()?))
                .collect()
        })
        .unwrap_or_default()
}

/// `clusterIPs`, or `clusterIP` alone in a Service written to etcd without
/// the API (the demo cluster does that).
fn requested_cluster_ips(service: &Value) -> Vec<String> {
    let spec = &service["spec"];
    let text = |ip: &Value| ip.as_str().map(str::to_owned);
    match spec["clusterIPs"].as_array().filter(|ips| !ips.is_empty()) {
        Some(ips) => ips.iter().filter_map(text).collect(),
        None => text(&spec["clusterIP"])
            .filter(|ip| !ip.is_empty())
            .into_iter()
            .collect(),
    }
}

fn log_release(result: Result<(), AllocError>) {
    match result {
        Ok(()) => {}
        // Not ours to give back: written without the API, or already freed.
        Err(error @ (AllocError::NotAllocated { .. } | AllocError::NotOwner { .. })) => {
            debug!(%error, "nothing to release");
        }
        Err(error) => warn!(%error, "releasing an allocation failed; it stays held"),
    }
}

/// Why a claim failed: a field the client asked for, or the server's side.
enum Failure {
    Field(FieldError),
    Internal(AllocError),
}

impl Failure {
    /// The request asked for `value` (rendered as Go prints it) at `path`,
    /// which cannot be had: a 422 naming the field.
    fn at(path: &str, value: String, error: AllocError) -> Self {
        match error {
            AllocError::AlreadyAllocated { .. } | AllocError::NotInRange { .. } => Self::Field(
                FieldError::invalid(path, Rendered(value), error.to_string()),
            ),
            other => Self::Internal(other),
        }
    }

    /// kube-apiserver reports a ClusterIP against the whole `clusterIPs`.
    fn cluster_ip(ip: &str, cluster_ips: &[String], error: AllocError) -> Self {
        let message = format!("failed to allocate IP {ip}: {error}");
        match Self::at("spec.clusterIPs", go_string_slice(cluster_ips), error) {
            Self::Field(mut field) => {
                field.message = message;
                Self::Field(field)
            }
            internal => internal,
        }
    }
}

impl From<Failure> for Refusal {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Field(field) => Refusal::Invalid(vec![field]),
            Failure::Internal(AllocError::Etcd(error)) if error.is_unavailable() => {
                Refusal::Unavailable(format!("failed to allocate a Service value: {error}"))
            }
            Failure::Internal(error) => {
                Refusal::Internal(format!("failed to allocate a Service value: {error}"))
            }
        }
    }
}

fn owner(service: &Value) -> Owner {
    let metadata = &service["metadata"];
    let text = |field: &str| metadata[field].as_str().unwrap_or_default().to_owned();
    Owner::new(text("namespace"), text("name"), text("uid"))
}

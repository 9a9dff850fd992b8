//! Keeps the datapath equal to what the cluster wants: consumes the etcd
//! watch's events, recomputes the frontends of each service they touch, and
//! programs the difference. Every change is logged with the service it came
//! from. This is where the cluster's terms (frontends, backends, policies)
//! become the datapath's map keys and entries: neither side knows the other.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::dns::{LocalDns, SharedIndex};

use super::{
    cluster::{
        etcd_watch::ClusterEvent,
        frontends::{BackendAddr, DesiredFrontend, Frontend, NodeRef},
        protocol::Protocol,
        service_ref::ServiceRef,
        shared::SharedCluster,
        state::ObjectChange,
    },
    datapath::{BackendKey, Datapath, FrontendKey, ObservedConnect, WriteError, chain},
    health_check::HealthChecks,
    node_eligibility::NodeEligibility,
    orphans::Orphans,
    outlier::{Detector, EventReporter, report},
    policy::Policy,
    telemetry::Telemetry,
};

/// How long to wait before retrying after the kernel refused a map write
/// (a full map, say): long enough not to spin, short enough to recover fast.
const RETRY_AFTER_WRITE_ERROR: Duration = Duration::from_secs(1);

pub struct Syncer {
    /// This node: `internalTrafficPolicy: Local` keeps traffic on it.
    node: String,
    /// Where this node serves NodePorts, if it does.
    node_ip: Option<Ipv4Addr>,
    node_ip6: Option<Ipv6Addr>,
    telemetry: Telemetry,
    /// The cache this loop keeps current; it publishes each change.
    cluster: SharedCluster,
    /// What `/healthz` reports of this node's Node, kept with its changes.
    eligibility: NodeEligibility,
    datapath: Datapath,
    /// Which service each programmed frontend belongs to.
    owners: HashMap<FrontendKey, ServiceRef>,
    /// The frontends each service owns, sorted: a slice rather than a set,
    /// whose smallest node has room for eleven keys where most Services
    /// have one frontend.
    owned: HashMap<ServiceRef, Box<[FrontendKey]>>,
    health_checks: HealthChecks,
    /// UDP backends removed by the writes so far, whose sockets to reset.
    orphans: Orphans,
    /// Where this node serves cluster DNS: the local backend of its Service.
    local_dns: Option<SocketAddrV4>,
    /// What the DNS server answers from, kept with the same changes.
    dns_index: Option<SharedIndex>,
    /// Passive health of the frontends whose Service asks for it.
    detector: Detector<FrontendKey>,
    events: EventReporter,
}

/// What the sync loop keeps current for the agent's other readers: the
/// metrics and health servers, and the cluster cache's.
pub struct Published {
    pub telemetry: Telemetry,
    pub cluster: SharedCluster,
    pub eligibility: NodeEligibility,
}

impl Syncer {
    pub fn new(
        node: String,
        (node_ip, node_ip6): (Option<Ipv4Addr>, Option<Ipv6Addr>),
        datapath: Datapath,
        dns: Option<LocalDns>,
        published: Published,
        events: EventReporter,
    ) -> Self {
        let Published {
            telemetry,
            cluster,
            eligibility,
        } = published;
        Self {
            node,
            node_ip,
            node_ip6,
            telemetry,
            cluster,
            eligibility,
            datapath,
            owners: HashMap::new(),
            owned: HashMap::new(),
            health_checks: HealthChecks::new(node_ip),
            orphans: Orphans::default(),
            local_dns: dns.as_ref().map(|dns| dns.server),
            dns_index: dns.map(|dns| dns.index),
            detector: Detector::default(),
            events,
        }
    }

    /// Runs until the event stream ends. The programs are hooked after the
    /// first full sync, so they never run on maps that are not filled (after
    /// an upgrade to a new map layout, the old programs serve until then).
    /// Between cluster events, connect outcomes may eject backends, and
    /// ejections end.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<ClusterEvent>,
        mut outcomes: mpsc::Receiver<Vec<ObservedConnect>>,
    ) -> anyhow::Result<()> {
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            let next_return = self
                .detector
                .next_return()
                .map(tokio::time::Instant::from_std);
            let result = tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.handle(event),
                    None => return Ok(()),
                },
                () = sleep_until(retry_at) => {
                    retry_at = None;
                    self.repair();
                    continue;
                }
                Some(batch) = outcomes.recv(), if retry_at.is_none() => self.observe(batch),
                () = sleep_until(next_return), if retry_at.is_none() => self.end_ejections(),
            };
            // The first event is always a full sync; hooking is done once.
            match result {
                Ok(()) => {
                    self.datapath
                        .hook()
                        .map_err(|error| anyhow::anyhow!(chain(&error)))
                        .context("hooking the datapath programs")?;
                    self.orphans.reset(&mut self.datapath, &self.telemetry);
                }
                Err(error) => {
                    self.telemetry.write_failed();
                    error!(error = %chain(&error), "a datapath write failed; re-reading the maps and retrying in {RETRY_AFTER_WRITE_ERROR:?}");
                    retry_at = Some(tokio::time::Instant::now() + RETRY_AFTER_WRITE_ERROR);
                }
            }
        }
    }

    fn handle(&mut self, event: ClusterEvent) -> Result<(), WriteError> {
        match event {
            ClusterEvent::Resync {
                services,
                slices,
                node,
                revision,
            } => {
                let started = Instant::now();
                // Not registered (yet): eligible, as before the Node is seen.
                let eligible = node.as_ref().is_none_or(|node| node.eligible);
                self.eligibility.set(eligible, &self.node);
                let touched = self.cluster.write().replace_all(services, slices, node);
                self.cluster.publish();
                self.update_dns(&touched);
                self.datapath.defer_writes();
                for service in &touched {
                    self.sync_service(service)?;
                }
                self.remove_unowned()?;
                self.datapath.flush()?;
                self.telemetry.full_sync_done(started.elapsed());
                // The list and the writes were decoded and planned in
                // buffers that are all free now.
                crate::malloc::release_free_memory();
                info!(
                    revision,
                    services = self.owned.len(),
                    frontends = self.owners.len(),
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "full sync done"
                );
            }
            ClusterEvent::Changes {
                changes,
                revision,
                received,
            } => {
                let mut touched = BTreeSet::new();
                {
                    let mut cluster = self.cluster.write();
                    for change in changes {
                        match &change {
                            ObjectChange::NodeUpsert(node) => {
                                self.eligibility.set(node.eligible, &self.node)
                            }
                            ObjectChange::NodeDelete => self.eligibility.set(false, &self.node),
                            _ => {}
                        }
                        touched.extend(cluster.apply(change));
                    }
                }
                self.cluster.publish();
                self.update_dns(&touched);
                for service in &touched {
                    self.sync_service(service)?;
                }
                self.telemetry.changes_applied(received.elapsed());
                tracing::debug!(revision, services = touched.len(), "changes applied");
            }
        }
        Ok(())
    }

    /// Feeds connect outcomes to the detector, and reprograms the
    /// frontends that eject a backend.
    fn observe(&mut self, batch: Vec<ObservedConnect>) -> Result<(), WriteError> {
        let now = Instant::now();
        let mut touched = BTreeSet::new();
        for ObservedConnect {
            frontend,
            backend,
            failed,
        } in batch
        {
            let Some(duration) = self.detector.observe(frontend, backend, failed, now) else {
                continue;
            };
            let Some(service) = self.owners.get(&frontend).cloned() else {
                continue;
            };
            info!(%service, %frontend, %backend, seconds = duration.as_secs(), "backend ejected: its connects kept failing");
            self.telemetry.backend_ejected(&service, backend);
            let message = format!(
                "backend {backend} of {frontend} ejected on node {} for {}s: its connects kept failing",
                self.node,
                duration.as_secs()
            );
            self.events
                .record(&service, self.uid_of(&service), report::EJECTED, message);
            touched.insert(service);
        }
        for service in &touched {
            self.sync_service(service)?;
        }
        self.publish_ejections();
        Ok(())
    }

    /// Gives back the backends whose ejection is over.
    fn end_ejections(&mut self) -> Result<(), WriteError> {
        let mut touched = BTreeSet::new();
        for (frontend, backend) in self.detector.end_ejections(Instant::now()) {
            let Some(service) = self.owners.get(&frontend).cloned() else {
                continue;
            };
            info!(%service, %frontend, %backend, "ejected backend returns");
            let message = format!(
                "backend {backend} of {frontend} returns on node {}",
                self.node
            );
            self.events
                .record(&service, self.uid_of(&service), report::RETURNED, message);
            touched.insert(service);
        }
        for service in &touched {
            self.sync_service(service)?;
        }
        self.publish_ejections();
        Ok(())
    }

    /// The uid of `service`, which the cache keeps for the Services with
    /// outlier detection, for their Events.
    fn uid_of(&self, service: &ServiceRef) -> Option<Box<str>> {
        self.cluster.read().service(service)?.uid.clone()
    }

    /// The ejected-backends gauge, by service.
    fn publish_ejections(&self) {
        let mut ejected: BTreeMap<ServiceRef, u64> = BTreeMap::new();
        for (frontend, count) in self.detector.ejected(Instant::now()) {
            if let Some(service) = self.owners.get(&frontend) {
                *ejected.entry(service.clone()).or_default() += count as u64;
            }
        }
        self.telemetry.set_ejected(ejected);
    }

    /// Brings cluster DNS up to date with the Services `touched`, before
    /// the maps are written: DNS never lags the datapath.
    fn update_dns(&self, touched: &BTreeSet<ServiceRef>) {
        if let Some(index) = &self.dns_index {
            index.update(&self.cluster.read(), touched);
        }
    }

    /// After a failed write the mirror may no longer match the maps, nor
    /// the ownership records the write was updating: read the maps back,
    /// derive every service's frontends afresh, and drop what no service
    /// owns.
    fn repair(&mut self) {
        self.owners.clear();
        self.owned.clear();
        if let Err(error) = self.datapath.adopt() {
            error!(error = %chain(&error), "re-reading the datapath maps failed");
            return;
        }
        let services: Vec<ServiceRef> = self.cluster.read().services().cloned().collect();
        let result = services
            .iter()
            .try_for_each(|service| self.sync_service(service))
            .and_then(|()| self.remove_unowned());
        match result {
            Ok(()) => {
                self.telemetry.repaired();
                info!("datapath repaired");
                self.orphans.reset(&mut self.datapath, &self.telemetry);
            }
            Err(error) => {
                error!(error = %chain(&error), "repairing the datapath failed; the next change retries")
            }
        }
    }

    /// Programs one service's frontends and removes those it no longer has.
    fn sync_service(&mut self, service: &ServiceRef) -> Result<(), WriteError> {
        let (desired, health_check, outlier_detection) = {
            let cluster = self.cluster.read();
            let node = NodeRef {
                name: &self.node,
                ip: self.node_ip,
                ip6: self.node_ip6,
                local_dns: self.local_dns,
                zone: cluster.zone(),
            };
            (
                cluster.desired(service, node),
                cluster.health_check(service, node),
                cluster
                    .service(service)
                    .and_then(|record| record.outlier_detection),
            )
        };
        self.health_checks.set(service, health_check);
        let mut keys = BTreeSet::new();
        for DesiredFrontend {
            frontend,
            backends,
            policy,
        } in &desired
        {
            let key = service_key(frontend);
            match self.owners.get(&key) {
                Some(owner) if owner != service => {
                    warn!(
                        %service, %owner, frontend = %service_key(frontend),
                        "two services claim one frontend; the first keeps it"
                    );
                    continue;
                }
                _ => {}
            }
            keys.insert(key);
            self.owners.insert(key, service.clone());
            let wanted: Vec<BackendKey> = backends
                .iter()
                .map(|backend| backend_of(backend, frontend))
                .collect();
            // Passive health watches TCP connects only.
            let wanted = match outlier_detection.filter(|_| frontend.protocol == Protocol::Tcp) {
                Some(config) => {
                    let addrs: Vec<SocketAddr> =
                        wanted.iter().map(BackendKey::socket_addr).collect();
                    let kept = self.detector.track(key, config, &addrs, Instant::now());
                    wanted
                        .into_iter()
                        .filter(|backend| kept.contains(&backend.socket_addr()))
                        .collect()
                }
                None => {
                    self.detector.forget(&key);
                    wanted
                }
            };
            self.program(service, frontend, key, &wanted, policy)?;
            self.telemetry
                .frontend_programmed(key, service, &frontend.port_name);
        }

        let keys: Box<[FrontendKey]> = keys.into_iter().collect();
        let previous = match keys.is_empty() {
            true => self.owned.remove(service),
            false => self.owned.insert(service.clone(), keys.clone()),
        };
        let gone = previous.iter().flatten();
        for key in gone.filter(|key| keys.binary_search(key).is_err()) {
            self.owners.remove(key);
            self.detector.forget(key);
            self.telemetry.frontend_removed(key);
            let backends = self.datapath.backends(key).unwrap_or_default();
            self.orphans.note(Some(service), *key, backends);
            self.datapath.remove(key).inspect_err(|error| {
                error!(%service, frontend = %key, error = %chain(error), "removing a frontend failed");
            })?;
            info!(%service, frontend = %key, "frontend removed");
        }
        Ok(())
    }

    fn program(
        &mut self,
        service: &ServiceRef,
        frontend: &Frontend,
        key: FrontendKey,
        wanted: &[BackendKey],
        policy: &Policy,
    ) -> Result<(), WriteError> {
        let change = self
            .datapath
            .set(key, wanted, policy)
            .inspect_err(|error| {
                error!(%service, frontend = %service_key(frontend), error = %chain(error), "programming a frontend failed");
            })?;
        let Some(change) = change else {
            return Ok(());
        };
        self.orphans
            .note(Some(service), key, change.removed.iter().copied());
        let added: Vec<String> = change.added.iter().map(ToString::to_string).collect();
        let removed: Vec<String> = change.removed.iter().map(ToString::to_string).collect();
        info!(
            %service,
            frontend = %service_key(frontend),
            port_name = %frontend.port_name,
            backends = change.count,
            ?added,
            ?removed,
            affinity_timeout = ?policy.affinity_timeout,
            external = policy.external,
            local_only = policy.local_only,
            source_ranges = policy.source_ranges.len(),
            "{}",
            if change.new_frontend { "frontend added" } else { "frontend changed" }
        );
        Ok(())
    }

    /// Frontends in the maps that no service owns: left by an earlier agent
    /// for services deleted while it was down.
    fn remove_unowned(&mut self) -> Result<(), WriteError> {
        let unowned: Vec<FrontendKey> = self
            .datapath
            .frontends()
            .filter(|key| !self.owners.contains_key(key))
            .copied()
            .collect();
        for key in unowned {
            self.detector.forget(&key);
            let backends = self.datapath.backends(&key).unwrap_or_default();
            self.orphans.note(None, key, backends);
            self.datapath.remove(&key).inspect_err(|error| {
                error!(frontend = %key, error = %chain(error), "removing a stale frontend failed");
            })?;
            self.telemetry.frontend_removed(&key);
            info!(frontend = %key, "stale frontend removed (its service is gone)");
        }
        Ok(())
    }
}

/// Sleeps until `at`; never wakes without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn service_key(frontend: &Frontend) -> FrontendKey {
    FrontendKey::new(
        frontend.ip,
        frontend.port.to_be(),
        ip_protocol(frontend.protocol),
    )
}

fn backend_of(backend: &BackendAddr, frontend: &Frontend) -> BackendKey {
    BackendKey::new(
        backend.ip,
        backend.port.to_be(),
        ip_protocol(frontend.protocol),
    )
}

/// The protocol number the datapath's map keys carry.
fn ip_protocol(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => proxy_common::PROTO_TCP,
        Protocol::Udp => proxy_common::PROTO_UDP,
    }
}

/// The datapath's form of what the cluster asks of a frontend.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_numbers_match_the_datapath() {
        assert_eq!(ip_protocol(Protocol::Tcp), 6);
        assert_eq!(ip_protocol(Protocol::Udp), 17);
    }
}

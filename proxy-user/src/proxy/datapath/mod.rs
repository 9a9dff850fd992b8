//! The node's eBPF datapath: the programs on the node's cgroup and uplink,
//! and the service maps kept equal to the frontends the cluster wants.
mod config;
mod connect_outcomes;
mod error;
mod ids;
mod keys;
mod loader;
mod maglev;
mod migrate;
mod netns;
mod observe;
mod pod_ports;
mod policy;
mod programmed;
mod sock_reset;
mod tables;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use aya::{Btf, Ebpf};
use proxy_common::{DatapathConfig, ipv6_words};
use tracing::info;

pub use config::ServiceCidrs;
pub use connect_outcomes::{ConnectOutcomes, ObservedConnect};
pub use error::{DatapathError, WriteError, chain};
pub use keys::{BackendKey, FrontendKey};
pub use loader::{Uplink, XdpChoice};
pub use maglev::MaglevSize;
pub use observe::{FrontendView, Observer, render_status};
pub use pod_ports::PodPorts;
pub use programmed::{BackendChange, MaglevParams, MapOp};
use programmed::{Plan, Programmed, by_map};
use sock_reset::SocketResetter;
pub use sock_reset::{Orphaned, ResetError, ResetOutcome};
use tables::Tables;

use crate::proxy::policy::Policy;

/// Where and how the datapath runs on this node.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Pin directory of maps and links.
    pub bpffs: PathBuf,
    /// cgroup v2 directory the socket programs attach to.
    pub cgroup: PathBuf,
    pub uplink: Option<Uplink>,
    pub service_cidrs: ServiceCidrs,
    pub maglev: MaglevParams,
    /// The source address of flows forwarded to remote backends.
    pub node_ip: Option<Ipv4Addr>,
    /// The source address of IPv6 flows forwarded to remote backends.
    pub node_ip6: Option<Ipv6Addr>,
    /// Interfaces facing this node's pods, whose ingress gets the
    /// per-packet program too.
    pub pod_interfaces: Vec<String>,
}

pub struct Datapath {
    settings: Settings,
    /// Held until the programs are hooked, then dropped: links and pins
    /// keep programs and maps alive.
    ebpf: Option<Ebpf>,
    tables: Tables,
    programmed: Programmed,
    resetter: SocketResetter,
    /// The `sock_ops` program's reports, until the sync loop takes them.
    connect_outcomes: Option<ConnectOutcomes>,
    /// The XDP redirect's pod ports, until the agent's refresh task takes
    /// them; `None` without XDP or pod interfaces.
    pod_ports: Option<PodPorts>,
    /// Writes held back by `defer_writes` until `flush`.
    deferred: Option<Deferred>,
}

/// Writes planned but not made yet, and how many Maglev tables (64 KiB
/// each) they carry.
#[derive(Default)]
struct Deferred {
    ops: Vec<MapOp>,
    tables: usize,
}

/// Deferred writes are made early once they hold this many Maglev tables
/// (4 MiB), or this many writes in all (a few MiB), so a full sync of many
/// Services needs no more memory than a slice of it.
const MAX_DEFERRED_TABLES: usize = 64;
const MAX_DEFERRED_OPS: usize = 256 * 1024;

impl Datapath {
    /// Loads the programs (reusing pinned maps) and adopts whatever state
    /// the maps already hold. The programs are not hooked until `hook`, so
    /// that the maps can be filled first.
    pub fn open(settings: Settings) -> Result<Self, DatapathError> {
        let config = DatapathConfig {
            maglev_size: settings.maglev.size.get(),
            hash_seed: settings.maglev.seed,
            node_address: settings
                .node_ip
                .map_or(0, |ip| u32::from_ne_bytes(ip.octets())),
            uplink_ifindex: match &settings.uplink {
                Some(uplink) => interface_index(&uplink.name)?,
                None => 0,
            },
            ..settings.service_cidrs.v4.datapath_config()
        };
        let cidr6 = settings
            .service_cidrs
            .v6
            .map(|cidr| cidr.datapath_config())
            .unwrap_or_default();
        let btf = Btf::from_sys_fs().map_err(DatapathError::Btf)?;
        let node6 = settings
            .node_ip6
            .map_or([0; 4], |ip| ipv6_words(ip.octets()));
        let mut ebpf = loader::load(&settings.bpffs, config, cidr6, node6, &btf)?;
        let mut datapath = Self {
            tables: Tables::take(&mut ebpf)?,
            programmed: Programmed::new(settings.maglev),
            resetter: SocketResetter::load(&mut ebpf, &btf, &settings.cgroup)?,
            connect_outcomes: Some(ConnectOutcomes::take(&mut ebpf)?),
            pod_ports: match &settings.uplink {
                Some(uplink)
                    if uplink.xdp != XdpChoice::Off && !settings.pod_interfaces.is_empty() =>
                {
                    Some(PodPorts::take(
                        &mut ebpf,
                        settings.cgroup.clone(),
                        settings.pod_interfaces.clone(),
                    )?)
                }
                _ => None,
            },
            deferred: None,
            ebpf: Some(ebpf),
            settings,
        };
        datapath.adopt()?;
        Ok(datapath)
    }

    /// Hooks the programs (swapping them into the links a previous agent
    /// pinned), once; later calls do nothing.
    pub fn hook(&mut self) -> Result<(), DatapathError> {
        let Some(mut ebpf) = self.ebpf.take() else {
            return Ok(());
        };
        let settings = &self.settings;
        loader::hook_all(
            &mut ebpf,
            &settings.bpffs,
            &settings.cgroup,
            settings.uplink.as_ref(),
            &settings.pod_interfaces,
        )
    }

    /// The outcomes of connects through frontends with outlier detection;
    /// `None` after the first call.
    pub fn take_connect_outcomes(&mut self) -> Option<ConnectOutcomes> {
        self.connect_outcomes.take()
    }

    /// The ports of the pods the XDP program redirects to, to keep current;
    /// `None` after the first call, or when XDP is off.
    pub fn take_pod_ports(&mut self) -> Option<PodPorts> {
        self.pod_ports.take()
    }

    /// Rebuilds the userspace mirror from the maps and repairs what an
    /// interrupted writer left half done. Used at start-up, and after a
    /// failed write left mirror and maps apart.
    pub fn adopt(&mut self) -> Result<(), DatapathError> {
        // Writes held back are moot: the mirror is rebuilt from the maps.
        self.deferred = None;
        let (programmed, mut repairs) =
            Programmed::adopt(self.tables.read()?, self.settings.maglev);
        repairs.retain(|op| !self.tables.holds(op));
        self.programmed = programmed;
        self.tables.write(&repairs).map_err(DatapathError::Repair)?;
        info!(
            frontends = self.programmed.keys().count(),
            repairs = repairs.len(),
            "adopted the state in the pinned maps"
        );
        Ok(())
    }

    pub fn frontends(&self) -> impl Iterator<Item = &FrontendKey> {
        self.programmed.keys()
    }

    /// The backends a frontend balances to now, `None` if it is not programmed.
    pub fn backends(&self, key: &FrontendKey) -> Option<Vec<BackendKey>> {
        self.programmed.backends(key)
    }

    /// Makes `key` balance to `backends` (an empty list keeps the frontend
    /// and makes it refuse connections) under `policy`. Returns what
    /// changed, `None` if nothing had to be written.
    pub fn set(
        &mut self,
        key: FrontendKey,
        backends: &[BackendKey],
        policy: &Policy,
    ) -> Result<Option<BackendChange>, WriteError> {
        let Plan { ops, change } = self.programmed.plan(key, backends, policy);
        self.write(&ops)?;
        Ok((!ops.is_empty()).then_some(change))
    }

    pub fn remove(&mut self, key: &FrontendKey) -> Result<(), WriteError> {
        let ops = self.programmed.remove(key);
        self.write(&ops)
    }

    /// Resets the connected UDP sockets of the node's pods that were
    /// translated to one of `orphans`: backends their frontend dropped.
    pub fn reset_sockets(&mut self, orphans: &Orphaned) -> Result<ResetOutcome, ResetError> {
        self.resetter.reset(orphans)
    }

    /// Holds the writes of `set` and `remove` back until `flush`, which
    /// makes them by map, in batches: a full sync then costs a few syscalls
    /// per map instead of one per entry. Nothing reads the maps in between
    /// but the programs, which see each entry only after what it names.
    pub fn defer_writes(&mut self) {
        self.deferred.get_or_insert_with(Deferred::default);
    }

    /// Makes the writes held back since `defer_writes`, and stops holding
    /// them back.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        match self.deferred.take() {
            Some(deferred) => self.tables.write(&by_map(deferred.ops)),
            None => Ok(()),
        }
    }

    fn write(&mut self, ops: &[MapOp]) -> Result<(), WriteError> {
        let Some(deferred) = &mut self.deferred else {
            return self.tables.write(ops);
        };
        deferred.ops.extend_from_slice(ops);
        deferred.tables += ops
            .iter()
            .filter(|op| matches!(op, MapOp::PutMaglev(..)))
            .count();
        if deferred.tables >= MAX_DEFERRED_TABLES || deferred.ops.len() >= MAX_DEFERRED_OPS {
            let ops = std::mem::take(&mut deferred.ops);
            deferred.tables = 0;
            self.tables.write(&by_map(ops))?;
        }
        Ok(())
    }
}

fn interface_index(name: &str) -> Result<u32, DatapathError> {
    let c_name =
        std::ffi::CString::new(name).map_err(|_| DatapathError::NoInterface(name.to_owned()))?;
    // SAFETY: a NUL-terminated name that outlives the call.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(DatapathError::NoInterface(name.to_owned())),
        index => Ok(index),
    }
}

//! The node's eBPF datapath: the programs on the node's cgroup, and the
//! service maps kept equal to the frontends the cluster wants.
mod config;
mod error;
mod ids;
mod iter_ops;
mod kfunc;
mod link_ops;
mod loader;
mod netns;
mod observe;
mod programmed;
mod sock_reset;
mod tables;

use std::path::Path;

use aya::{Btf, maps::MapError};
use proxy_common::{Backend, OrphanKey, ServiceKey};
use tracing::info;

pub use config::ServiceCidr;
pub use error::{DatapathError, chain};
pub use observe::{FrontendView, Observer, render_status};
pub use programmed::MapOp;
use programmed::Programmed;
use sock_reset::SocketResetter;
pub use sock_reset::{ResetError, ResetOutcome};
use tables::Tables;

/// A map write the kernel refused, and which write it was.
#[derive(Debug, thiserror::Error)]
#[error("{op:?}")]
pub struct WriteError {
    pub op: MapOp,
    #[source]
    pub cause: MapError,
}

pub struct Datapath {
    tables: Tables,
    programmed: Programmed,
    resetter: SocketResetter,
}

impl Datapath {
    /// Loads and hooks the programs (reusing pinned maps and links) and
    /// adopts whatever state the maps already hold.
    pub fn open(
        bpffs: &Path,
        cgroup: &Path,
        uplink: Option<&str>,
        service_cidr: ServiceCidr,
    ) -> Result<Self, DatapathError> {
        // The links pin the programs and the maps are pinned too, so the
        // loader's handles can go once the service maps are taken out.
        let btf = Btf::from_sys_fs().map_err(DatapathError::Btf)?;
        let mut ebpf = loader::load(bpffs, cgroup, uplink, service_cidr.datapath_config(), &btf)?;
        let mut datapath = Self {
            tables: Tables::take(&mut ebpf)?,
            programmed: Programmed::default(),
            resetter: SocketResetter::load(&mut ebpf, &btf, cgroup)?,
        };
        datapath.adopt()?;
        Ok(datapath)
    }

    /// Rebuilds the userspace mirror from the maps and repairs what an
    /// interrupted writer left half done. Used at start-up, and after a
    /// failed write left mirror and maps apart.
    pub fn adopt(&mut self) -> Result<(), DatapathError> {
        let (programmed, repairs) = Programmed::adopt(self.tables.read()?);
        self.programmed = programmed;
        self.write(&repairs).map_err(DatapathError::Repair)?;
        info!(
            frontends = self.programmed.keys().count(),
            repairs = repairs.len(),
            "adopted the state in the pinned maps"
        );
        Ok(())
    }

    pub fn frontends(&self) -> impl Iterator<Item = &ServiceKey> {
        self.programmed.keys()
    }

    /// The backends a frontend balances to now, `None` if it is not programmed.
    pub fn backends(&self, key: &ServiceKey) -> Option<Vec<Backend>> {
        self.programmed.backends(key)
    }

    /// Makes `key` balance to `backends` (an empty list keeps the frontend
    /// and makes it refuse connections), with client affinity for
    /// `affinity_timeout` seconds if given. Returns whether anything had to
    /// be written.
    pub fn set(
        &mut self,
        key: ServiceKey,
        backends: &[Backend],
        affinity_timeout: Option<u32>,
    ) -> Result<bool, WriteError> {
        let ops = self.programmed.set(key, backends, affinity_timeout);
        self.write(&ops)?;
        Ok(!ops.is_empty())
    }

    pub fn remove(&mut self, key: &ServiceKey) -> Result<(), WriteError> {
        let ops = self.programmed.remove(key);
        self.write(&ops)
    }

    /// Resets the connected UDP sockets of the node's pods that were
    /// translated to one of `orphans`: backends their frontend dropped.
    pub fn reset_sockets(&mut self, orphans: &[OrphanKey]) -> Result<ResetOutcome, ResetError> {
        self.resetter.reset(orphans)
    }

    fn write(&mut self, ops: &[MapOp]) -> Result<(), WriteError> {
        for op in ops {
            self.tables
                .apply(op)
                .map_err(|cause| WriteError { op: *op, cause })?;
        }
        Ok(())
    }
}

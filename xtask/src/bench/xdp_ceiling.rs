//! The XDP_DROP ceiling beside the NodePort figure: the packets per second
//! that reach XDP on node 1's uplink at all, when an XDP program there drops
//! every one of them (`skiff-xdp-drop`, built with the agent's programs but
//! never loaded by it). No XDP program on that link can handle more; the
//! XDP variant runs on node 2's uplink, built the same way. The program is
//! attached in native mode only for its own rounds, while node 1's agent
//! runs without XDP, and counted by the uplink's own receive counter, so no
//! BPF statistics slow it down.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::{load, rig::Rig};
use crate::sh;

/// The uplink, as the harness names it in every node.
const UPLINK: &str = "eth0";

/// The drop program, loaded and pinned for the figure's rounds.
pub struct DropCeiling {
    pin: PathBuf,
}

impl DropCeiling {
    /// Loads `object` (the agent build's `skiff-xdp-drop`) and pins it
    /// beside node 1's agent's pins.
    pub fn load(rig: &Rig, object: &Path) -> Result<Self> {
        let pin = rig.node(1).bpffs_dir().with_file_name("bench-xdp-drop");
        sh::stdout(
            Command::new("bpftool")
                .args(["prog", "load"])
                .arg(object)
                .arg(&pin)
                .args(["type", "xdp"]),
        )
        .with_context(|| format!("loading {}", object.display()))?;
        Ok(Self { pin })
    }

    /// Packets per second reaching XDP on node 1's uplink while the drop
    /// program is attached and `target` (node 1's address) is blasted as the
    /// NodePort variants are.
    pub fn measure(&self, rig: &Rig, target: SocketAddr, time: std::time::Duration) -> Result<f64> {
        let node = rig.node(1);
        sh::stdout(
            node.command("bpftool")
                .args(["net", "attach", "xdpdrv", "pinned"])
                .arg(&self.pin)
                .args(["dev", UPLINK]),
        )
        .context("attaching the drop program to node1's uplink")?;
        let measured = (|| {
            let before = received(rig)?;
            let blast = load::udp_blast_pinned(rig.ext(), target, time)?;
            let packets = received(rig)?.saturating_sub(before);
            if packets == 0 || blast.seconds <= 0.0 {
                bail!("no packet reached node1's uplink");
            }
            Ok(packets as f64 / blast.seconds)
        })();
        let detached = sh::stdout(
            node.command("bpftool")
                .args(["net", "detach", "xdpdrv", "dev", UPLINK]),
        )
        .context("detaching the drop program from node1's uplink");
        let pps = measured?;
        detached?;
        Ok(pps)
    }
}

impl Drop for DropCeiling {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pin);
    }
}

/// Packets node 1's uplink has received: in native mode a veth counts every
/// frame its XDP program ran on, dropped or not.
fn received(rig: &Rig) -> Result<u64> {
    let json = sh::stdout(
        rig.node(1)
            .command("ip")
            .args(["-s", "-j", "link", "show", "dev", UPLINK]),
    )?;
    let links: serde_json::Value = serde_json::from_str(&json).context("reading ip's JSON")?;
    links[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .context("ip -s link show gave no receive counter")
}

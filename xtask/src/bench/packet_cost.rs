//! What a packet that belongs to no Service costs the per-packet programs
//! on node 2's uplink, where both the XDP and the TCX program are attached:
//! the client pod on node 1 blasts UDP at the sink pod on node 2 (its own
//! address, no Service), and the kernel's BPF run-time statistics of the
//! two programs, read before and after, give nanoseconds per run.
use std::{fs, net::SocketAddr, path::Path, process::Command};

use anyhow::{Context, Result, bail};

use super::{
    load,
    plan::Plan,
    progress::Progress,
    results::PacketCost,
    rig::{Rig, XdpSupport},
};
use crate::sh;

/// The kernel counts run time and runs only while this is 1.
const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
/// Nothing listens there: the packets are the stack's to drop.
const DISCARD_PORT: u16 = 9;
/// The pinned links of node 2's uplink programs, under its bpffs directory.
const TC_LINK: &str = "links/skiff_tc_ingress";
const XDP_LINK: &str = "links/skiff_xdp_ingress_native";

pub fn measure(rig: &Rig, plan: &Plan, progress: &Progress) -> PacketCost {
    let mut cost = PacketCost::default();
    if let XdpSupport::Unavailable(why) = &rig.xdp {
        cost.xdp_unavailable = Some(why.clone());
    }
    let before = fs::read_to_string(BPF_STATS).unwrap_or_else(|_| "0".into());
    let measured = fs::write(BPF_STATS, "1")
        .with_context(|| format!("enabling {BPF_STATS}"))
        .and_then(|()| rounds(rig, plan, progress, &mut cost));
    // Restored whatever happened: the statistics cost every program a
    // little.
    let _ = fs::write(BPF_STATS, before.trim());
    if let Err(error) = measured {
        cost.error = Some(format!("{error:#}"));
    }
    cost
}

fn rounds(rig: &Rig, plan: &Plan, progress: &Progress, cost: &mut PacketCost) -> Result<()> {
    let bpffs = rig.node(2).bpffs_dir();
    let target = SocketAddr::from((rig.sinks[1].ip(), DISCARD_PORT));
    let with_xdp = cost.xdp_unavailable.is_none();
    for round in 0..plan.rounds {
        let tc_before = RunStats::of(&bpffs.join(TC_LINK))?;
        let xdp_before = with_xdp
            .then(|| RunStats::of(&bpffs.join(XDP_LINK)))
            .transpose()?;
        load::udp_blast(&rig.client, target, plan.figure_time)?;
        let tc = RunStats::of(&bpffs.join(TC_LINK))?.ns_per_run_since(&tc_before)?;
        cost.tc_ns.push(tc);
        let xdp = match xdp_before {
            Some(before) => {
                let xdp = RunStats::of(&bpffs.join(XDP_LINK))?.ns_per_run_since(&before)?;
                cost.xdp_ns.push(xdp);
                format!("{xdp:.0} ns")
            }
            None => "—".into(),
        };
        progress.step(format_args!(
            "no-Service packet cost round {}/{}: tc {tc:.0} ns, XDP {xdp}",
            round + 1,
            plan.rounds
        ));
    }
    Ok(())
}

/// A program's cumulative run time and run count.
struct RunStats {
    run_time_ns: u64,
    run_cnt: u64,
}

impl RunStats {
    /// The statistics of the program behind the pinned link `link`.
    fn of(link: &Path) -> Result<Self> {
        let link_info = bpftool(&["link", "show", "pinned"], link)?;
        let id = link_info["prog_id"]
            .as_u64()
            .with_context(|| format!("{} names no program", link.display()))?;
        let prog = bpftool(&["prog", "show", "id"], Path::new(&id.to_string()))?;
        Ok(Self {
            run_time_ns: prog["run_time_ns"].as_u64().unwrap_or(0),
            run_cnt: prog["run_cnt"].as_u64().unwrap_or(0),
        })
    }

    fn ns_per_run_since(&self, before: &Self) -> Result<f64> {
        let runs = self.run_cnt.saturating_sub(before.run_cnt);
        if runs == 0 {
            bail!("the program did not run during the blast");
        }
        Ok(self.run_time_ns.saturating_sub(before.run_time_ns) as f64 / runs as f64)
    }
}

fn bpftool(args: &[&str], last: &Path) -> Result<serde_json::Value> {
    let json = sh::stdout(Command::new("bpftool").arg("-j").args(args).arg(last))?;
    serde_json::from_str(&json).context("reading bpftool's JSON")
}

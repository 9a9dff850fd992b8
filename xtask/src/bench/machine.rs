//! What the run ran on, for the report's header.

use std::{fs, path::Path, process::Command};

use super::{kube_proxy, results::Machine, rules::iptables_version};

/// `kube_proxy`: the binary when this run uses it.
pub fn describe(kube_proxy: Option<&Path>) -> Machine {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    Machine {
        date: first_line(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])),
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|release| release.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into()),
        cpu,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        iptables: iptables_version(),
        kube_proxy: kube_proxy.map_or_else(|| "not used in this run".into(), kube_proxy::version),
        nft: first_line(Command::new("nft").arg("--version")),
        dnsmasq: first_line(Command::new("dnsmasq").arg("--version")),
        // nginx -v writes to stderr.
        nginx: first_line(Command::new("sh").args(["-c", "nginx -v 2>&1"])),
        wrk: first_line(Command::new("wrk").arg("-v")),
    }
}

fn first_line(command: &mut Command) -> String {
    command
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into())
}

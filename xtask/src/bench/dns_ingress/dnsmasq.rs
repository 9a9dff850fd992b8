//! The DNS baseline: Debian's dnsmasq in node 1's netns, answering for
//! `cluster.local` from a hosts file that holds the same records as the
//! agent, with no upstream at all: names it does not hold are NXDOMAIN in
//! `cluster.local` and REFUSED elsewhere, and it never sends a query on.

use std::{
    fmt::Write as _,
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::Stdio,
};

use anyhow::{Context, Result};
use skiff_tests::{Node, ProcessGuard};

/// Beside the agent's :53 on the same address.
pub const PORT: u16 = 1053;
/// The agent's answers carry the same TTL.
const TTL_SECONDS: u32 = 30;

/// Starts dnsmasq on `node`'s address, port [`PORT`], serving `records`
/// (name, address; a name may repeat); returns it and its address. It
/// logs to `dnsmasq.log` in `state_dir`; the caller waits for answers.
pub fn start(
    node: &Node,
    records: &[(String, Ipv4Addr)],
    state_dir: &Path,
) -> Result<(ProcessGuard, SocketAddr)> {
    let hosts = state_dir.join("dnsmasq.hosts");
    fs::write(&hosts, hosts_file(records))
        .with_context(|| format!("writing {}", hosts.display()))?;
    let log_path = state_dir.join("dnsmasq.log");
    let log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let address = SocketAddr::from((node.ip(), PORT));
    let mut command = node.command("dnsmasq");
    command
        // No /etc/dnsmasq.conf, /etc/hosts nor /etc/resolv.conf: no
        // upstream server is known, so none is ever asked.
        .args([
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
        ])
        .arg("--keep-in-foreground")
        .arg(format!("--listen-address={}", node.ip()))
        .arg("--bind-interfaces")
        .arg(format!("--port={PORT}"))
        .arg(format!("--addn-hosts={}", hosts.display()))
        .arg("--local=/cluster.local/")
        .arg(format!("--local-ttl={TTL_SECONDS}"))
        .args(["--user=root", "--pid-file", "--log-facility=-"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let server = ProcessGuard::spawn(&mut command).context("starting dnsmasq")?;
    Ok((server, address))
}

/// /etc/hosts format: one line per (address, name), names without the
/// root's trailing dot.
fn hosts_file(records: &[(String, Ipv4Addr)]) -> String {
    let mut text = String::new();
    for (name, ip) in records {
        let _ = writeln!(text, "{ip} {}", name.trim_end_matches('.'));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_record() {
        let records = [
            (
                "svc-0.default.svc.cluster.local.".to_owned(),
                Ipv4Addr::new(10, 96, 16, 0),
            ),
            (
                "headless.default.svc.cluster.local".to_owned(),
                Ipv4Addr::new(10, 244, 2, 2),
            ),
        ];
        assert_eq!(
            hosts_file(&records),
            "10.96.16.0 svc-0.default.svc.cluster.local\n\
             10.244.2.2 headless.default.svc.cluster.local\n"
        );
    }
}

//! The network-safety checks (docs/ARCHITECTURE.md, "Network safety"):
//! before a cluster is built, nothing of the machine's own routing may be
//! shadowed; once built, no skiff netns may reach beyond the cluster. Only
//! `ip route show/get` is used: neither sends a packet.

use std::process::Command;

use crate::addressing::{CONTROL_PLANE_IP, FABRIC_CIDR, POD_SUPERNET, SERVICE_CIDR};
use crate::cmd::{ip, ip_in, output};
use crate::error::{HarnessError, Result};
use crate::prefix::Prefix;
use crate::teardown;
use crate::wiring::ROUTE_PROTO;

/// Addresses on the real internet that no skiff netns may have a route to.
const OUTSIDE_V4: [&str; 2] = ["1.1.1.1", "8.8.8.8"];
const OUTSIDE_V6: &str = "2001:4860:4860::8888";

/// Fails if `prefix` already has leftovers, or if the root netns routes any
/// part of the cluster's ranges (in any table): that is either another skiff
/// cluster (`cargo xtask up`) or the machine's own network, and a cluster
/// would hijack it.
pub(crate) fn check_root_free(prefix: &Prefix) -> Result<()> {
    let leftovers = teardown::leftovers(prefix)?;
    if !leftovers.is_empty() {
        return Err(HarnessError::Conflict(format!(
            "cluster {prefix} already exists ({}): run `cargo xtask down` first",
            leftovers.join(", ")
        )));
    }
    for range in [FABRIC_CIDR, POD_SUPERNET, SERVICE_CIDR] {
        let routes = ip(&format!("-o -4 route show table all root {range}"))?;
        if let Some(route) = routes
            .lines()
            .map(str::trim)
            .find(|r| !is_stale_blackhole(r))
        {
            let dev = route.split_whitespace().skip_while(|w| *w != "dev").nth(1);
            let message = match dev.and_then(Prefix::owner_of) {
                Some(owner) => format!(
                    "skiff cluster {owner} is up (the root netns routes `{route}`): run `cargo xtask down` first"
                ),
                None => format!(
                    "the root netns already routes `{route}`, which is not skiff's; \
                     refusing to shadow it (if it is a skiff leftover, run `cargo xtask down`)"
                ),
            };
            return Err(HarnessError::Conflict(message));
        }
    }
    Ok(())
}

/// Our own service-CIDR blackhole, left by a cluster that died without
/// teardown; the new cluster replaces it.
fn is_stale_blackhole(route: &str) -> bool {
    route.starts_with(&format!("blackhole {SERVICE_CIDR} "))
        && route.contains(&format!("proto {ROUTE_PROTO}"))
}

/// Every netns in `namespaces`: no default route (v4 or v6), no route via
/// the root netns, and no route to well-known outside addresses. The root
/// netns: blackholes the service CIDR. Reports every violation at once.
pub(crate) fn assert_isolated(namespaces: &[String]) -> Result<()> {
    let mut violations = Vec::new();
    for ns in namespaces {
        for family in ["-4", "-6"] {
            let routes = ip_in(ns, &format!("{family} -o route show"))?;
            for route in routes.lines().map(str::trim) {
                if route.starts_with("default") {
                    violations.push(format!("{ns} has a default route `{route}`"));
                }
                if route.contains(&format!("via {CONTROL_PLANE_IP}")) {
                    violations.push(format!("{ns} routes via the root netns: `{route}`"));
                }
            }
        }
        for outside in OUTSIDE_V4.into_iter().chain([OUTSIDE_V6]) {
            let route = output(Command::new("ip").args(["-n", ns, "route", "get", outside]))?;
            if route.status.success() {
                let how = String::from_utf8_lossy(&route.stdout);
                violations.push(format!("{ns} can reach {outside}: `{}`", how.trim()));
            }
        }
    }
    let blackhole = ip(&format!("-o route show exact {SERVICE_CIDR}"))?;
    if !blackhole.trim_start().starts_with("blackhole") {
        violations.push(format!(
            "the root netns does not blackhole {SERVICE_CIDR}: `{}`",
            blackhole.trim()
        ));
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(HarnessError::NotIsolated(violations.join("; ")))
    }
}

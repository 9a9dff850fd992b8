//! The backends a sync took away from UDP frontends, and the reset of the
//! connected sockets still fixed on them once the sync's map writes are in
//! (so the reconnect that follows can only pick a live backend).
//!
//! TCP is left alone: a TCP connection to a removed backend fails by itself
//! when the backend goes, and one to a backend that is only terminating
//! must be allowed to finish, as with kube-proxy.
//!
//! Both families: an IPv6 socket connected to an IPv4-mapped address is
//! an IPv4 orphan's (the hooks translated it through the IPv4 maps).
use std::{
    collections::BTreeMap,
    fmt::Display,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
};

use proxy_common::{OrphanKey, OrphanKey6, PROTO_UDP, ipv6_octets};
use tracing::{error, info, warn};

use super::{
    cluster::service_ref::ServiceRef,
    datapath::{BackendKey, Datapath, FrontendKey, Orphaned, chain},
    telemetry::Telemetry,
};

/// Orphaned (frontend, backend) pairs awaiting their socket reset, per
/// family, with the service that owned the frontend (none for a frontend
/// found in the maps that no service claims).
#[derive(Debug, Default)]
pub struct Orphans {
    pending: BTreeMap<OrphanKey, Option<ServiceRef>>,
    pending6: BTreeMap<OrphanKey6, Option<ServiceRef>>,
}

/// One socket an iterator reset (or failed to).
struct Reset<'a> {
    service: Option<&'a ServiceRef>,
    frontend: &'a dyn Display,
    backend: &'a dyn Display,
    socket: SocketAddr,
    cookie: u64,
    result: i32,
}

impl Orphans {
    /// `frontend` of `service` no longer balances to `removed`.
    pub fn note(
        &mut self,
        service: Option<&ServiceRef>,
        frontend: FrontendKey,
        removed: impl IntoIterator<Item = BackendKey>,
    ) {
        if frontend.protocol() != PROTO_UDP {
            return;
        }
        for backend in removed {
            match (frontend, backend) {
                (FrontendKey::V4(frontend), BackendKey::V4(backend)) => {
                    self.pending
                        .insert(OrphanKey { frontend, backend }, service.cloned());
                }
                (FrontendKey::V6(frontend), BackendKey::V6(backend)) => {
                    self.pending6
                        .insert(OrphanKey6 { frontend, backend }, service.cloned());
                }
                // A frontend balances over backends of its own family only.
                (frontend, backend) => {
                    warn!(%frontend, %backend, "a removed backend of the other family is not an orphan");
                }
            }
        }
    }

    /// Resets the sockets of every pending pair; logs and counts each.
    pub fn reset(&mut self, datapath: &mut Datapath, telemetry: &Telemetry) {
        if self.pending.is_empty() && self.pending6.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let pending6 = std::mem::take(&mut self.pending6);
        let orphaned = Orphaned {
            v4: pending.keys().copied().collect(),
            v6: pending6.keys().copied().collect(),
        };
        let outcome = match datapath.reset_sockets(&orphaned) {
            Ok(outcome) => outcome,
            Err(error) => {
                let orphans = orphaned.v4.len() + orphaned.v6.len();
                error!(error = %chain(&error), orphans, "resetting the sockets of removed UDP backends failed");
                return;
            }
        };
        for (pid, error) in &outcome.failures {
            warn!(pid, %error, "could not reset UDP sockets in the network namespace of this process");
        }
        for reset in &outcome.resets {
            let key = OrphanKey {
                frontend: reset.frontend,
                backend: reset.backend,
            };
            let local = Ipv4Addr::from(reset.local_address.to_ne_bytes());
            log_and_count(
                telemetry,
                Reset {
                    service: pending.get(&key).and_then(Option::as_ref),
                    frontend: &reset.frontend,
                    backend: &reset.backend,
                    socket: SocketAddrV4::new(local, reset.local_port).into(),
                    cookie: reset.cookie,
                    result: reset.result,
                },
            );
        }
        for reset in &outcome.resets6 {
            let key = OrphanKey6 {
                frontend: reset.frontend,
                backend: reset.backend,
            };
            let local = Ipv6Addr::from(ipv6_octets(reset.local_address));
            log_and_count(
                telemetry,
                Reset {
                    service: pending6.get(&key).and_then(Option::as_ref),
                    frontend: &reset.frontend,
                    backend: &reset.backend,
                    socket: SocketAddrV6::new(local, reset.local_port, 0, 0).into(),
                    cookie: reset.cookie,
                    result: reset.result,
                },
            );
        }
    }
}

fn log_and_count(telemetry: &Telemetry, reset: Reset<'_>) {
    let Reset {
        service,
        frontend,
        backend,
        socket,
        cookie,
        result,
    } = reset;
    // A frontend no service claims is named by its address alone.
    let service_name = service.map_or_else(|| "-".to_owned(), ToString::to_string);
    if result != 0 {
        warn!(service = %service_name, %frontend, %backend, %socket, errno = -result, "resetting a UDP socket failed");
        return;
    }
    info!(service = %service_name, %frontend, %backend, %socket, cookie, "UDP socket reset: its backend left the service");
    telemetry.udp_socket_reset(service);
}

#[cfg(test)]
mod tests {
    use proxy_common::{Backend, Backend6, PROTO_TCP, ServiceKey, ServiceKey6, ipv6_words};

    use super::*;

    fn frontend(protocol: u8) -> ServiceKey {
        ServiceKey {
            address: u32::from_ne_bytes([10, 96, 0, 10]),
            port: 53u16.to_be(),
            protocol,
            pad: 0,
        }
    }

    fn backend(last: u8, protocol: u8) -> Backend {
        Backend {
            address: u32::from_ne_bytes([10, 244, 1, last]),
            port: 5353u16.to_be(),
            protocol,
            pad: 0,
        }
    }

    #[test]
    fn only_udp_backends_are_orphaned() {
        let service = ServiceRef {
            namespace: "default".into(),
            name: "web".into(),
        };
        let mut orphans = Orphans::default();
        orphans.note(
            Some(&service),
            frontend(PROTO_TCP).into(),
            [backend(2, PROTO_TCP).into()],
        );
        orphans.note(
            Some(&service),
            frontend(PROTO_UDP).into(),
            [backend(2, PROTO_UDP).into(), backend(3, PROTO_UDP).into()],
        );
        let pending: Vec<(OrphanKey, Option<ServiceRef>)> = orphans.pending.into_iter().collect();
        assert_eq!(
            pending,
            [2, 3].map(|last| (
                OrphanKey {
                    frontend: frontend(PROTO_UDP),
                    backend: backend(last, PROTO_UDP),
                },
                Some(service.clone()),
            ))
        );
    }

    #[test]
    fn ipv6_pairs_are_orphaned_beside_the_ipv4_ones() {
        let words = |text: &str| ipv6_words(text.parse::<Ipv6Addr>().unwrap().octets());
        let frontend6 = ServiceKey6 {
            address: words("fd00:10:96::a"),
            port: 53u16.to_be(),
            protocol: PROTO_UDP,
            pad: 0,
        };
        let backend6 = Backend6 {
            address: words("fd00:10:244:1::2"),
            port: 5353u16.to_be(),
            protocol: PROTO_UDP,
            pad: 0,
        };
        let mut orphans = Orphans::default();
        orphans.note(None, FrontendKey::V6(frontend6), [BackendKey::V6(backend6)]);
        orphans.note(
            None,
            frontend(PROTO_UDP).into(),
            [backend(2, PROTO_UDP).into()],
        );
        let pending6: Vec<OrphanKey6> = orphans.pending6.into_keys().collect();
        assert_eq!(
            pending6,
            [OrphanKey6 {
                frontend: frontend6,
                backend: backend6,
            }]
        );
        assert_eq!(orphans.pending.len(), 1);
    }
}

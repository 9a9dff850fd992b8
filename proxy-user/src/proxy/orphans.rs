//! The backends a sync took away from UDP frontends, and the reset of the
//! connected sockets still fixed on them once the sync's map writes are in
//! (so the reconnect that follows can only pick a live backend).
//!
//! TCP is left alone: a TCP connection to a removed backend fails by itself
//! when the backend goes, and one to a backend that is only terminating
//! must be allowed to finish, as with kube-proxy.
//!
//! IPv4 only: the reset iterator reads the IPv4 fields of each socket, so
//! an IPv6 socket connected to a removed backend is not reset (its sends
//! fail until it reconnects).
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4},
};

use proxy_common::{OrphanKey, PROTO_UDP};
use tracing::{debug, error, info, warn};

use super::{
    cluster::service_ref::ServiceRef,
    datapath::{BackendKey, Datapath, FrontendKey, chain},
    telemetry::Telemetry,
};

/// Orphaned (frontend, backend) pairs awaiting their socket reset, with
/// the service that owned the frontend (none for a frontend found in the
/// maps that no service claims).
#[derive(Debug, Default)]
pub struct Orphans {
    pending: BTreeMap<OrphanKey, Option<ServiceRef>>,
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
                _ => {
                    debug!(%frontend, %backend, "connected IPv6 UDP sockets of a removed backend are not reset");
                }
            }
        }
    }

    /// Resets the sockets of every pending pair; logs and counts each.
    pub fn reset(&mut self, datapath: &mut Datapath, telemetry: &Telemetry) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let orphans: Vec<OrphanKey> = pending.keys().copied().collect();
        let outcome = match datapath.reset_sockets(&orphans) {
            Ok(outcome) => outcome,
            Err(error) => {
                error!(error = %chain(&error), orphans = orphans.len(), "resetting the sockets of removed UDP backends failed");
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
            let service = pending.get(&key).cloned().flatten();
            let socket = SocketAddrV4::new(
                Ipv4Addr::from(reset.local_address.to_ne_bytes()),
                reset.local_port,
            );
            // A frontend no service claims is named by its address alone.
            let service_name = service
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string);
            if reset.result != 0 {
                warn!(service = %service_name, frontend = %reset.frontend, backend = %reset.backend, %socket, errno = -reset.result, "resetting a UDP socket failed");
                continue;
            }
            info!(service = %service_name, frontend = %reset.frontend, backend = %reset.backend, %socket, cookie = reset.cookie, "UDP socket reset: its backend left the service");
            telemetry.udp_socket_reset(service.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use proxy_common::{Backend, PROTO_TCP, ServiceKey};

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
}

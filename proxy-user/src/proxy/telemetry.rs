//! What the agent tells about itself: the labels of each programmed
//! frontend, counters and timings of its own work, and its health. The
//! kernel's counters come from the pinned maps at scrape time.
use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use proxy_common::drop_reason;

use super::{
    cluster::service_ref::ServiceRef,
    datapath::{FrontendKey, FrontendView},
};

/// Upper bounds, in seconds, of the change-to-datapath latency buckets.
const LATENCY_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Shared by the sync loop (which records) and the HTTP server (which
/// renders).
#[derive(Clone, Default)]
pub struct Telemetry(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    labels: HashMap<FrontendKey, Labels>,
    full_syncs: u64,
    last_full_sync: Option<(SystemTime, Duration)>,
    change_batches: u64,
    latency_buckets: [u64; LATENCY_BUCKETS.len()],
    latency_sum: f64,
    write_errors: u64,
    repairing: bool,
    /// Connected UDP sockets reset because their backend left the
    /// service, by service (`None`: a frontend no service claimed).
    udp_socket_resets: BTreeMap<Option<ServiceRef>, u64>,
    /// Backends ejected by outlier detection, by service and backend.
    ejections: BTreeMap<(ServiceRef, String), u64>,
    /// Backends ejected now, by service.
    ejected: BTreeMap<ServiceRef, u64>,
}

struct Labels {
    service: ServiceRef,
    /// Shared with the Service's record.
    port_name: Arc<str>,
}

/// What `/healthz` answers.
pub struct Health {
    pub healthy: bool,
    pub body: String,
    /// When the datapath last took in the whole cluster.
    pub last_full_sync: Option<SystemTime>,
}

impl Telemetry {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain counters behind;
        // they are still worth serving.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn frontend_programmed(
        &self,
        key: FrontendKey,
        service: &ServiceRef,
        port_name: &Arc<str>,
    ) {
        self.state().labels.insert(
            key,
            Labels {
                service: service.clone(),
                port_name: port_name.clone(),
            },
        );
    }

    pub fn frontend_removed(&self, key: &FrontendKey) {
        self.state().labels.remove(key);
    }

    pub fn full_sync_done(&self, took: Duration) {
        let mut state = self.state();
        state.full_syncs += 1;
        state.last_full_sync = Some((SystemTime::now(), took));
    }

    /// A batch of watch changes reached the maps `latency` after etcd's
    /// answer arrived.
    pub fn changes_applied(&self, latency: Duration) {
        let mut state = self.state();
        let seconds = latency.as_secs_f64();
        state.change_batches += 1;
        state.latency_sum += seconds;
        if let Some(bucket) = LATENCY_BUCKETS.iter().position(|&bound| seconds <= bound) {
            state.latency_buckets[bucket] += 1;
        }
    }

    pub fn write_failed(&self) {
        let mut state = self.state();
        state.write_errors += 1;
        state.repairing = true;
    }

    pub fn udp_socket_reset(&self, service: Option<&ServiceRef>) {
        *self
            .state()
            .udp_socket_resets
            .entry(service.cloned())
            .or_default() += 1;
    }

    pub fn backend_ejected(&self, service: &ServiceRef, backend: std::net::SocketAddr) {
        *self
            .state()
            .ejections
            .entry((service.clone(), backend.to_string()))
            .or_default() += 1;
    }

    /// How many backends each service has ejected now.
    pub fn set_ejected(&self, ejected: BTreeMap<ServiceRef, u64>) {
        let mut state = self.state();
        // A service that ejected once keeps its gauge, at 0 once none is.
        for count in state.ejected.values_mut() {
            *count = 0;
        }
        state.ejected.extend(ejected);
    }

    pub fn repaired(&self) {
        self.state().repairing = false;
    }

    /// Healthy once the maps hold a full sync of etcd and no failed write
    /// awaits repair.
    pub fn health(&self) -> Health {
        let state = self.state();
        let (status, healthy) = match (&state.last_full_sync, state.repairing) {
            (None, _) => ("syncing", false),
            (Some(_), true) => ("repairing", false),
            (Some(_), false) => ("ok", true),
        };
        let last_full_sync = state
            .last_full_sync
            .map(|(at, _)| at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs());
        Health {
            healthy,
            last_full_sync: state.last_full_sync.map(|(at, _)| at),
            body: serde_json::json!({
                "status": status,
                "lastFullSyncUnixSeconds": last_full_sync,
                "frontends": state.labels.len(),
            })
            .to_string(),
        }
    }

    /// The Prometheus text exposition of the agent and of `frontends` and
    /// `drops` as read from the maps.
    pub fn render_metrics(&self, frontends: &[FrontendView], drops: &[u64]) -> String {
        let state = self.state();
        let mut out = String::new();
        let per_frontend: [Counter; 5] = [
            (
                "skiff_frontend_connections_total",
                "Connects sent to a backend.",
                |v| v.stats.connects,
            ),
            (
                "skiff_frontend_udp_sends_total",
                "Unconnected UDP datagrams sent to a backend.",
                |v| v.stats.udp_sends,
            ),
            (
                "skiff_frontend_refused_total",
                "Connects and sends refused for lack of an endpoint.",
                |v| v.stats.refused,
            ),
            (
                "skiff_frontend_packets_total",
                "Packets of per-packet (external) flows, both directions.",
                |v| v.stats.packets,
            ),
            (
                "skiff_frontend_bytes_total",
                "Bytes of per-packet (external) flows, both directions.",
                |v| v.stats.bytes,
            ),
        ];
        for (name, help, value) in per_frontend {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for view in frontends {
                let _ = writeln!(
                    out,
                    "{name}{{{}}} {}",
                    frontend_labels(&state, view),
                    value(view)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP skiff_frontend_backends Backends a frontend balances to.\n# TYPE skiff_frontend_backends gauge"
        );
        for view in frontends {
            let labels = frontend_labels(&state, view);
            let _ = writeln!(
                out,
                "skiff_frontend_backends{{{labels}}} {}",
                view.backends.len()
            );
        }
        let _ = writeln!(
            out,
            "# HELP skiff_drops_total Connects and sends the datapath failed, by reason.\n# TYPE skiff_drops_total counter"
        );
        for (reason, count) in drop_reason::NAMES.iter().zip(drops) {
            let _ = writeln!(out, "skiff_drops_total{{reason=\"{reason}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP skiff_full_syncs_total Full syncs of etcd into the datapath.\n# TYPE skiff_full_syncs_total counter\nskiff_full_syncs_total {}",
            state.full_syncs
        );
        if let Some((_, took)) = state.last_full_sync {
            let _ = writeln!(
                out,
                "# HELP skiff_last_full_sync_seconds How long the last full sync took.\n# TYPE skiff_last_full_sync_seconds gauge\nskiff_last_full_sync_seconds {}",
                took.as_secs_f64()
            );
        }
        let _ = writeln!(
            out,
            "# HELP skiff_datapath_write_errors_total Map writes the kernel refused.\n# TYPE skiff_datapath_write_errors_total counter\nskiff_datapath_write_errors_total {}",
            state.write_errors
        );
        let name = "skiff_udp_socket_resets_total";
        let _ = writeln!(
            out,
            "# HELP {name} Connected UDP sockets reset because their backend left the service.\n# TYPE {name} counter"
        );
        for (service, count) in &state.udp_socket_resets {
            let labels = match service {
                Some(service) => format!(
                    "namespace=\"{}\",service=\"{}\"",
                    service.namespace, service.name
                ),
                None => String::new(),
            };
            let _ = writeln!(out, "{name}{{{labels}}} {count}");
        }
        let name = "skiff_backend_ejections_total";
        let _ = writeln!(
            out,
            "# HELP {name} Backends ejected by outlier detection because their connects kept failing.\n# TYPE {name} counter"
        );
        for ((service, backend), count) in &state.ejections {
            let _ = writeln!(
                out,
                "{name}{{namespace=\"{}\",service=\"{}\",backend=\"{backend}\"}} {count}",
                service.namespace, service.name
            );
        }
        let name = "skiff_backends_ejected";
        let _ = writeln!(
            out,
            "# HELP {name} Backends ejected by outlier detection now.\n# TYPE {name} gauge"
        );
        for (service, count) in &state.ejected {
            let _ = writeln!(
                out,
                "{name}{{namespace=\"{}\",service=\"{}\"}} {count}",
                service.namespace, service.name
            );
        }
        let name = "skiff_change_to_datapath_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} From an etcd watch response arriving to its changes being in the maps.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(state.latency_buckets) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", state.change_batches);
        let _ = writeln!(out, "{name}_sum {}", state.latency_sum);
        let _ = writeln!(out, "{name}_count {}", state.change_batches);
        out
    }
}

/// A per-frontend counter: its name, help text and where its value is.
type Counter = (&'static str, &'static str, fn(&FrontendView) -> u64);

/// `namespace="default",service="web",port_name="http",frontend="10.96.0.10:80/TCP"`;
/// a frontend no service claims (yet) is labelled by its address alone.
fn frontend_labels(state: &State, view: &FrontendView) -> String {
    match state.labels.get(&view.key) {
        Some(labels) => format!(
            "namespace=\"{}\",service=\"{}\",port_name=\"{}\",frontend=\"{}\"",
            labels.service.namespace, labels.service.name, labels.port_name, view.key
        ),
        None => format!("frontend=\"{}\"", view.key),
    }
}

#[cfg(test)]
mod tests {
    use proxy_common::{FrontendStats, PROTO_TCP, ServiceKey, ServiceValue};

    use super::*;

    fn view() -> FrontendView {
        FrontendView {
            key: FrontendKey::V4(ServiceKey {
                address: u32::from_ne_bytes([10, 96, 0, 10]),
                port: 80u16.to_be(),
                protocol: PROTO_TCP,
                pad: 0,
            }),
            value: ServiceValue {
                id: 1,
                backend_count: 0,
                flags: 0,
                affinity_timeout: 0,
            },
            backends: Vec::new(),
            stats: FrontendStats {
                connects: 5,
                udp_sends: 0,
                refused: 2,
                ..FrontendStats::default()
            },
        }
    }

    fn web() -> ServiceRef {
        ServiceRef {
            namespace: "default".into(),
            name: "web".into(),
        }
    }

    #[test]
    fn metrics_carry_service_labels_and_kernel_counters() {
        let telemetry = Telemetry::default();
        let service = web();
        telemetry.frontend_programmed(view().key, &service, &"http".into());
        telemetry.changes_applied(Duration::from_micros(300));
        telemetry.changes_applied(Duration::from_secs(3));
        telemetry.udp_socket_reset(Some(&service));
        telemetry.udp_socket_reset(Some(&service));
        let text = telemetry.render_metrics(&[view()], &[2, 1, 0]);
        let labels = "namespace=\"default\",service=\"web\",port_name=\"http\",frontend=\"10.96.0.10:80/TCP\"";
        assert!(
            text.contains(&format!("skiff_frontend_connections_total{{{labels}}} 5")),
            "{text}"
        );
        assert!(
            text.contains(&format!("skiff_frontend_refused_total{{{labels}}} 2")),
            "{text}"
        );
        assert!(
            text.contains("skiff_drops_total{reason=\"no_endpoints\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("skiff_drops_total{reason=\"unknown_service\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("skiff_change_to_datapath_seconds_bucket{le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("skiff_change_to_datapath_seconds_bucket{le=\"1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("skiff_change_to_datapath_seconds_count 2"),
            "{text}"
        );
        assert!(
            text.contains("skiff_udp_socket_resets_total{namespace=\"default\",service=\"web\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn ejections_are_counted_by_backend_and_the_gauge_falls_back_to_zero() {
        let telemetry = Telemetry::default();
        let service = web();
        let backend = std::net::SocketAddr::from(([10, 244, 1, 5], 8080));
        telemetry.backend_ejected(&service, backend);
        telemetry.set_ejected(BTreeMap::from([(service.clone(), 1)]));
        let text = telemetry.render_metrics(&[], &[]);
        assert!(text.contains(
            "skiff_backend_ejections_total{namespace=\"default\",service=\"web\",backend=\"10.244.1.5:8080\"} 1"
        ));
        assert!(text.contains("skiff_backends_ejected{namespace=\"default\",service=\"web\"} 1"));
        telemetry.set_ejected(BTreeMap::new());
        let text = telemetry.render_metrics(&[], &[]);
        assert!(text.contains("skiff_backends_ejected{namespace=\"default\",service=\"web\"} 0"));
    }

    #[test]
    fn health_needs_a_full_sync_and_no_pending_repair() {
        let telemetry = Telemetry::default();
        assert!(!telemetry.health().healthy);
        telemetry.full_sync_done(Duration::from_millis(3));
        assert!(telemetry.health().healthy);
        telemetry.write_failed();
        let health = telemetry.health();
        assert!(!health.healthy);
        assert!(health.body.contains("\"repairing\""), "{}", health.body);
        telemetry.repaired();
        assert!(telemetry.health().healthy);
    }
}

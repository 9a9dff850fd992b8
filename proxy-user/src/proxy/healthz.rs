//! The health port kube-proxy serves (`--healthz-bind`, 10256), for load
//! balancers and liveness probes: `/healthz` is 200 while the datapath is
//! in sync and the node is eligible for traffic (KEP-3836), else 503;
//! `/livez` leaves the node's eligibility out, so a draining node is not
//! restarted. Both answer with kube-proxy's JSON body.
use std::time::SystemTime;

use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Bytes};
use k8s_openapi::jiff::Timestamp;
use tokio::net::TcpListener;

use super::{http, node_eligibility::NodeEligibility, telemetry::Telemetry};

/// Serves `/healthz` and `/livez` on `listener`.
pub async fn serve(listener: TcpListener, telemetry: Telemetry, eligibility: NodeEligibility) {
    http::serve_with(listener, move |request| {
        respond(request, &telemetry, &eligibility)
    })
    .await
}

fn respond<B>(
    request: &Request<B>,
    telemetry: &Telemetry,
    eligibility: &NodeEligibility,
) -> Response<Full<Bytes>> {
    let health = telemetry.health();
    let now = SystemTime::now();
    // As kube-proxy: a healthy proxy reports itself updated now; an
    // unhealthy one when it last was.
    let last_updated = match health.healthy {
        true => Some(now),
        false => health.last_full_sync,
    };
    let mut body = serde_json::json!({
        "lastUpdated": go_time(last_updated),
        "currentTime": go_time(Some(now)),
    });
    let healthy = match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => {
            let node_eligible = eligibility.eligible();
            body["nodeEligible"] = node_eligible.into();
            health.healthy && node_eligible
        }
        (&Method::GET, "/livez") => health.healthy,
        _ => {
            return http::reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: try /healthz or /livez\n".to_owned(),
            );
        }
    };
    let status = match healthy {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    http::reply(status, "application/json", body.to_string())
}

/// `at` as Go's `time.Time.String()` writes a UTC time (kube-proxy's body
/// holds that); `None` is Go's zero time.
fn go_time(at: Option<SystemTime>) -> String {
    let at = at
        .and_then(|at| Timestamp::try_from(at).ok())
        .unwrap_or_else(|| Timestamp::from_second(-62_135_596_800).expect("year 1 is in range"));
    at.strftime("%Y-%m-%d %H:%M:%S%.f +0000 UTC").to_string()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).unwrap()
    }

    #[test]
    fn times_read_as_go_writes_them() {
        assert_eq!(go_time(None), "0001-01-01 00:00:00 +0000 UTC");
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        assert_eq!(go_time(Some(at)), "2023-11-14 22:13:20.25 +0000 UTC");
    }

    #[test]
    fn healthz_needs_a_synced_datapath_and_an_eligible_node_and_livez_only_the_first() {
        let telemetry = Telemetry::default();
        let eligibility = NodeEligibility::default();
        let status = |path| respond(&get(path), &telemetry, &eligibility).status();
        assert_eq!(status("/healthz"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status("/livez"), StatusCode::SERVICE_UNAVAILABLE);
        telemetry.full_sync_done(Duration::from_millis(1));
        assert_eq!(status("/healthz"), StatusCode::OK);
        assert_eq!(status("/livez"), StatusCode::OK);
        assert_eq!(status("/metrics"), StatusCode::NOT_FOUND);
    }
}

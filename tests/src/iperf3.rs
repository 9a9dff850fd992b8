//! iperf3 streams the end-to-end tests keep open across a fault, and the
//! JSON reports they end with.
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// How a stream is paced and reported.
#[derive(Debug, Clone, Copy)]
pub struct StreamPlan {
    pub seconds: u32,
    /// Seconds between reports.
    pub interval: f64,
    /// iperf3's `--bitrate`, low enough to stay cheap on a shared machine.
    pub bitrate: &'static str,
}

/// Starts `command` (an `iperf3` in some netns) as a client streaming to
/// `target:port` as `plan` says, reporting in JSON.
pub fn start_stream(mut command: Command, target: Ipv4Addr, port: u16, plan: StreamPlan) -> Child {
    command
        .args(["--client", &target.to_string(), "--port", &port.to_string()])
        .args(["--time", &plan.seconds.to_string()])
        .args(["--interval", &plan.interval.to_string()])
        .args(["--bitrate", plan.bitrate, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("iperf3 client starts")
}

/// Waits for the client of `plan`'s stream and returns its report, having
/// checked that the stream ended without an error and reported (nearly)
/// every interval.
pub fn finished_report(name: &str, client: Child, plan: StreamPlan) -> Value {
    let output = client.wait_with_output().expect("iperf3 client ends");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{name}: iperf3 printed no JSON ({error}): {output:?}"));
    assert!(
        output.status.success() && report.get("error").is_none(),
        "{name}: the stream failed: {}",
        report["error"]
    );
    let reported = report["intervals"].as_array().map_or(0, Vec::len);
    assert!(
        reported as f64 >= f64::from(plan.seconds) / plan.interval - 1.0,
        "{name}: only {reported} intervals"
    );
    report
}

//! Running Debian's `wrk` (HTTP/1.1 keep-alive load, its latency
//! distribution on) and reading its report.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use skiff_tests::Host;

/// Connections held open, as the Ingress target states.
pub const CONNECTIONS: usize = 64;
const THREADS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// `wrk` from `from` against `url` with header `Host: host`, for `time`
/// (whole seconds, at least one). A socket error or a non-2xx answer fails
/// the run: a proxy that answers errors fast would look fast.
pub fn run(from: &Host, url: &str, host: &str, time: Duration) -> Result<Report> {
    let mut command = from.command("wrk");
    command
        .arg(format!("--threads={THREADS}"))
        .arg(format!("--connections={CONNECTIONS}"))
        .arg(format!("--duration={}s", time.as_secs().max(1)))
        .args(["--timeout=2s", "--latency", "--header"])
        .arg(format!("Host: {host}"))
        .arg(url);
    let text = super::output_of(&mut command)?;
    parse(&text).with_context(|| format!("reading wrk's report:\n{text}"))
}

fn parse(text: &str) -> Result<Report> {
    let field = |prefix: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix).map(str::trim))
    };
    if let Some(errors) = field("Socket errors:") {
        bail!("socket errors: {errors}");
    }
    if let Some(count) = field("Non-2xx or 3xx responses:") {
        bail!("{count} answers were not 2xx or 3xx");
    }
    let requests_per_second = field("Requests/sec:")
        .context("no Requests/sec")?
        .parse()
        .context("Requests/sec")?;
    let percentile = |p: &str| -> Result<f64> {
        let value = field(p).with_context(|| format!("no {p} latency"))?;
        milliseconds(value).with_context(|| format!("the {p} latency {value:?}"))
    };
    Ok(Report {
        requests_per_second,
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
    })
}

/// wrk's durations: a number and `us`, `ms`, `s`, `m` or `h`.
fn milliseconds(value: &str) -> Option<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 1s test @ http://172.30.0.11:8080/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  456.78us  10.00ms   90.00%
    Req/Sec    25.00k     1.00k   27.00k    80.00%
  Latency Distribution
     50%  850.00us
     75%    1.40ms
     90%    1.80ms
     99%    3.00ms
  50000 requests in 1.00s, 7.00MB read
Requests/sec:  49950.25
Transfer/sec:      7.00MB
";

    #[test]
    fn reads_the_rate_and_the_percentiles() {
        assert_eq!(
            parse(REPORT).unwrap(),
            Report {
                requests_per_second: 49950.25,
                p50_ms: 0.85,
                p99_ms: 3.0,
            }
        );
    }

    #[test]
    fn errors_fail_the_run() {
        let with_errors = REPORT.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 12\nRequests/sec",
        );
        let error = parse(&with_errors).unwrap_err().to_string();
        assert!(error.contains("12 answers"), "{error}");
        let with_socket_errors = REPORT.replace(
            "Requests/sec",
            "  Socket errors: connect 0, read 3, write 0, timeout 0\nRequests/sec",
        );
        assert!(parse(&with_socket_errors).is_err());
    }
}

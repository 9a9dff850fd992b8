//! One probe check, as the kubelet makes it from the node: a TCP connect
//! or an HTTP GET to the pod's address (status 200-399 passes), or a
//! command run inside the container by `runc exec` (exit 0 passes). Each check is bounded
//! by the probe's `timeoutSeconds`. Lifecycle hooks perform the same
//! actions.
use std::{net::Ipv4Addr, time::Duration};

use k8s_openapi::{
    api::core::v1::{Container, ExecAction, HTTPGetAction, Probe, TCPSocketAction},
    apimachinery::pkg::util::intstr::IntOrString,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use super::oci::runc::ExecTarget;

/// The timings of a probe, defaulted as Kubernetes defaults them.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(probe: &Probe) -> Timing {
        let seconds = |value: Option<i32>, default: u64| {
            Duration::from_secs(value.map_or(default, |v| v.max(0) as u64))
        };
        Timing {
            initial_delay: seconds(probe.initial_delay_seconds, 0),
            period: seconds(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: probe.success_threshold.map_or(1, |v| v.max(1) as u32),
            failure_threshold: probe.failure_threshold.map_or(3, |v| v.max(1) as u32),
        }
    }
}

/// What a probe needs to reach the container.
#[derive(Debug, Clone)]
pub struct Target {
    pub pod_ip: Ipv4Addr,
    pub container: Container,
    /// For `exec`: `runc exec` into the container.
    pub exec: ExecTarget,
}

/// What a probe or a lifecycle hook does to the container.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    Tcp(&'a TCPSocketAction),
    Http(&'a HTTPGetAction),
    Exec(&'a ExecAction),
}

impl<'a> Action<'a> {
    pub fn of_probe(probe: &'a Probe) -> Option<Action<'a>> {
        (probe.tcp_socket.as_ref().map(Action::Tcp))
            .or_else(|| probe.http_get.as_ref().map(Action::Http))
            .or_else(|| probe.exec.as_ref().map(Action::Exec))
    }
}

/// Passes, or fails with why.
pub async fn check(probe: &Probe, target: &Target) -> Result<(), String> {
    let timeout = Timing::of(probe).timeout;
    let Some(action) = Action::of_probe(probe) else {
        return Err("the probe has no tcpSocket, httpGet or exec handler".to_owned());
    };
    tokio::time::timeout(timeout, perform(action, target))
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {timeout:?}")))
}

/// Performs `action` once, unbounded: the caller sets the deadline.
pub async fn perform(action: Action<'_>, target: &Target) -> Result<(), String> {
    match action {
        Action::Tcp(tcp) => {
            let host = tcp
                .host
                .clone()
                .unwrap_or_else(|| target.pod_ip.to_string());
            let port = port(&tcp.port, &target.container)?;
            TcpStream::connect((host.as_str(), port))
                .await
                .map(drop)
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
        }
        Action::Http(http) => {
            if http
                .scheme
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("https"))
            {
                return Err("HTTPS probes are not supported".to_owned());
            }
            let host = http
                .host
                .clone()
                .unwrap_or_else(|| target.pod_ip.to_string());
            let port = port(&http.port, &target.container)?;
            let path = http.path.clone().unwrap_or_else(|| "/".to_owned());
            let headers: String = http
                .http_headers
                .iter()
                .flatten()
                .map(|h| format!("{}: {}\r\n", h.name, h.value))
                .collect();
            http_get(&host, port, &path, &headers).await
        }
        Action::Exec(exec) => {
            let argv = exec.command.clone().unwrap_or_default();
            if argv.is_empty() {
                return Err("exec: no command".to_owned());
            }
            let mut command = target.exec.command(&argv);
            command.kill_on_drop(true);
            let status = command.status().await.map_err(|e| format!("exec: {e}"))?;
            match status.success() {
                true => Ok(()),
                false => Err(format!("command {argv:?} exited with {status}")),
            }
        }
    }
}

/// A numeric port, or a named port of the container.
fn port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(port) => u16::try_from(*port).map_err(|_| format!("invalid port {port}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("the container has no port named {name}")),
    }
}

async fn http_get(host: &str, port: u16, path: &str, headers: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/skiff\r\nAccept: */*\r\n{headers}Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 512];
    while !head.contains(&b'\n') {
        let read = stream
            .read(&mut buffer)
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let line = String::from_utf8_lossy(&head);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP response: {:?}",
                line.lines().next().unwrap_or("")
            )
        })?;
    match status {
        200..=399 => Ok(()),
        _ => Err(format!("HTTP probe failed with statuscode: {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_default_as_kubernetes() {
        let timing = Timing::of(&Probe::default());
        assert_eq!(timing.period, Duration::from_secs(10));
        assert_eq!(timing.timeout, Duration::from_secs(1));
        assert_eq!((timing.success_threshold, timing.failure_threshold), (1, 3));
    }

    #[tokio::test]
    async fn http_probes_pass_on_2xx_3xx_only() {
        for (answer, passes) in [
            ("HTTP/1.1 200 OK", true),
            ("HTTP/1.1 302 Found", true),
            ("HTTP/1.1 500 Oops", false),
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut buffer = [0u8; 1024];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(format!("{answer}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            });
            assert_eq!(
                http_get("127.0.0.1", port, "/healthz", "").await.is_ok(),
                passes,
                "{answer}"
            );
            server.await.unwrap();
        }
    }
}

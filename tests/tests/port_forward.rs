//! End to end: the real `kubectl port-forward` to a pod of the echo image,
//! through skiff-control to the pod's node agent, which joins the
//! forwarded connections to the pod's own loopback.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::{
    io::{BufRead as _, BufReader, Read, Write as _},
    net::TcpStream,
    process::{Child, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use skiff_tests::Testbed;

const TIMEOUT: Duration = Duration::from_secs(60);

const POD: &str = r#"{
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": { "name": "web" },
  "spec": {
    "containers": [{
      "name": "echo",
      "image": "skiff/echo",
      "readinessProbe": { "tcpSocket": { "port": 8080 }, "periodSeconds": 1 }
    }]
  }
}"#;

/// The lines `from` gives, as they come.
fn lines(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// How kubectl carries the SPDY frames.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    /// In a WebSocket (KEP-4006), kubectl's first choice.
    WebSocket,
    /// A plain `Upgrade: SPDY/3.1`, kubectl's fallback.
    Spdy,
}

/// A running `kubectl -v=4 port-forward pod/<pod> :<remote>`.
struct PortForward {
    child: Child,
    /// The local port it chose (from its `Forwarding from
    /// 127.0.0.1:<port> -> <remote>` line).
    port: u16,
    /// Kept open: kubectl dies of SIGPIPE writing "Handling connection"
    /// to a closed stdout.
    _stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl PortForward {
    /// Stops kubectl; all it wrote on stderr.
    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.iter().collect()
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_forward(testbed: &Testbed, pod: &str, remote: u16, transport: Transport) -> PortForward {
    let mut command = testbed.kubectl().unwrap();
    if transport == Transport::Spdy {
        command.env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false");
    }
    command
        .args([
            "port-forward",
            "-v=4",
            &format!("pod/{pod}"),
            &format!(":{remote}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    let line = stdout.recv_timeout(TIMEOUT).unwrap_or_else(|error| {
        let _ = child.kill();
        let said: Vec<String> = stderr.try_iter().collect();
        panic!("kubectl port-forward said nothing ({error}): {said:?}")
    });
    let port = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.split_once(' '))
        .and_then(|(port, _)| port.parse().ok())
        .unwrap_or_else(|| panic!("not the line expected: {line}"));
    PortForward {
        child,
        port,
        _stdout: stdout,
        stderr,
    }
}

/// An HTTP request through `127.0.0.1:<port>`: the whole answer.
fn get(port: u16) -> String {
    let mut connection = TcpStream::connect(("127.0.0.1", port)).unwrap();
    connection.set_read_timeout(Some(TIMEOUT)).unwrap();
    connection
        .write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    // The connection closes at the answer's end, or with nothing when the
    // forwarding fails.
    let _ = connection.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn kubectl_port_forward_reaches_the_pods_port() {
    let mut testbed = Testbed::start_running_pods(1).unwrap();
    testbed.start_control(&[]).unwrap();
    testbed.run_kubectl(&["apply", "-f", "-"], POD).unwrap();
    // Ready: its server listens.
    testbed
        .run_kubectl(
            &["wait", "--for=condition=Ready", "pod/web", "--timeout=60s"],
            "",
        )
        .unwrap();

    // Two connections in sequence over one port-forward, each answered by
    // the pod's server, whichever way kubectl carries them.
    for transport in [Transport::WebSocket, Transport::Spdy] {
        let forward = port_forward(&testbed, "web", 8080, transport);
        for round in 0..2 {
            let answer = get(forward.port);
            assert!(
                answer.starts_with("HTTP/1.0 200 OK"),
                "{transport:?} {round}: {answer:?}"
            );
            assert!(
                answer.ends_with("skiff-echo\n"),
                "{transport:?} {round}: {answer:?}"
            );
        }
        // kubectl -v=4 tells how the WebSocket went, and nothing of it when
        // told not to try one.
        let said = forward.stop();
        let tunnelled = said.iter().any(|line| {
            line.contains("Negotiation complete") && line.contains("portforward.k8s.io")
        });
        let fell_back = said.iter().any(|line| line.contains("fallback"));
        assert_eq!(
            (tunnelled, fell_back),
            (transport == Transport::WebSocket, false),
            "{transport:?}: {said:?}"
        );
    }

    // Nothing listens on port 9 in the pod: the agent says so on the
    // error stream and kubectl reports it.
    let forward = port_forward(&testbed, "web", 9, Transport::WebSocket);
    assert_eq!(get(forward.port), "");
    let error = loop {
        let line = forward
            .stderr
            .recv_timeout(TIMEOUT)
            .expect("kubectl reports the error");
        if line.contains("error forwarding port 9") {
            break line;
        }
    };
    assert!(error.contains("to pod default/web"), "{error}");
    assert!(error.contains("Connection refused"), "{error}");
    drop(forward);

    // A client that goes away leaves no connection open in the pod: the
    // echo server waits for a request on this one until the agent passes
    // the end on.
    let forward = port_forward(&testbed, "web", 8080, Transport::WebSocket);
    let _idle = TcpStream::connect(("127.0.0.1", forward.port)).unwrap();
    let connections = || {
        testbed
            .run_kubectl(&["exec", "web", "--", "netstat", "-tn"], "")
            .unwrap()
            .lines()
            .filter(|line| line.contains(":8080 ") && line.contains("ESTABLISHED"))
            .count()
    };
    let started = Instant::now();
    while connections() == 0 {
        assert!(
            started.elapsed() < TIMEOUT,
            "the forwarded connection never opened"
        );
        thread::sleep(Duration::from_millis(200));
    }
    forward.stop();
    while connections() > 0 {
        assert!(
            started.elapsed() < TIMEOUT,
            "the pod's connection outlived kubectl"
        );
        thread::sleep(Duration::from_millis(200));
    }

    // A pod that does not exist is refused before anything is forwarded.
    let mut missing = testbed.kubectl().unwrap();
    let out = missing
        .args(["port-forward", "-v=4", "pod/nowhere", ":8080"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
}

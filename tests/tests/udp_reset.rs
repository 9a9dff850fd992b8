//! End to end: a connected UDP socket is fixed to the backend `connect4`
//! chose. When that backend leaves the Service, the agent resets the socket,
//! so a client that connects again on the error reaches
//! a live backend; a socket connected straight to the pod is left alone.
mod common;

use std::{
    fs,
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use common::{REACTION_BOUND, Web, metric, vip};
use skiff_tests::{CallResult, FailureKind, Pod, echo_binary, parse_call_output};

/// `skiff-echo call` with one connected UDP socket kept for every attempt,
/// reconnected only after the kernel aborts it.
fn kept_socket_args(target: SocketAddr, duration: Duration) -> Vec<String> {
    [
        "udp",
        &target.to_string(),
        "--connected",
        "--keep-socket",
        "--duration-ms",
        &duration.as_millis().to_string(),
        "--interval-ms",
        "20",
        "--timeout-ms",
        "200",
    ]
    .map(str::to_owned)
    .to_vec()
}

type Attempts = Arc<Mutex<Vec<(Instant, CallResult)>>>;

/// A `skiff-echo call` loop whose attempts are stamped as they arrive, so
/// they can be set against the moment the Service changed.
struct StampedCalls {
    child: Child,
    attempts: Attempts,
    reader: Option<JoinHandle<()>>,
}

impl StampedCalls {
    fn start(pod: &Pod, args: &[String]) -> Self {
        let mut child = pod
            .command(echo_binary().expect("skiff-echo is built"))
            .arg("call")
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("skiff-echo call starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let attempts = Attempts::default();
        let sink = attempts.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let parsed = parse_call_output(&line).expect("a call result line");
                let now = Instant::now();
                let mut sink = sink.lock().expect("not poisoned");
                sink.extend(parsed.into_iter().map(|result| (now, result)));
            }
        });
        Self {
            child,
            attempts,
            reader: Some(reader),
        }
    }

    /// The backend of the first answer, waiting for it.
    fn first_backend(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let first = self
                .attempts
                .lock()
                .expect("not poisoned")
                .iter()
                .find_map(|(_, result)| result.backend().map(str::to_owned));
            if let Some(backend) = first {
                return backend;
            }
            assert!(Instant::now() < deadline, "no answer in 5 s");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn finish(mut self) -> Vec<(Instant, CallResult)> {
        let status = self.child.wait().expect("skiff-echo call ends");
        assert!(status.success(), "skiff-echo call: {status}");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the reader ends");
        }
        std::mem::take(&mut *self.attempts.lock().expect("not poisoned"))
    }
}

impl Drop for StampedCalls {
    fn drop(&mut self) {
        // Only matters when a test failed before `finish`.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_aborted(result: &CallResult) -> bool {
    matches!(result, CallResult::Failed { error, .. } if error.contains("os error 103"))
}

/// Kills every process of `pod` (its servers), as when a pod is deleted:
/// its address then answers with ICMP port unreachable, which leaves a
/// connected UDP socket connected.
fn kill_pod(pod: &Pod) {
    fs::write(pod.cgroup_dir().join("cgroup.kill"), "1").expect("the pod's processes are killed");
}

#[test]
fn a_connected_udp_socket_leaves_a_removed_backend_within_a_second() {
    let web = Web::start();
    let through_vip = StampedCalls::start(
        &web.client,
        &kept_socket_args(vip(53), Duration::from_secs(4)),
    );
    let old = through_vip.first_backend();
    let (gone, kept) = match old.as_str() {
        "web-a" => (&web.a, &web.b),
        _ => (&web.b, &web.a),
    };
    let direct_target = SocketAddr::from((gone.ip(), 5353));
    let direct = StampedCalls::start(
        &web.client,
        &kept_socket_args(direct_target, Duration::from_secs(3)),
    );
    assert_eq!(direct.first_backend(), old);

    let changed = Instant::now();
    web.set_endpoints(&[web.ready(kept)]);
    kill_pod(gone);

    // Through the VIP: the socket is aborted, connected again, and answered
    // by the remaining backend, within the reaction bound.
    let attempts = through_vip.finish();
    let after: Vec<&(Instant, CallResult)> =
        attempts.iter().filter(|(at, _)| *at > changed).collect();
    let (recovered_at, _) = after
        .iter()
        .find(|(_, result)| result.backend() == Some(kept.name()))
        .unwrap_or_else(|| panic!("{} never answered: {after:?}", kept.name()));
    let (aborted_at, _) = after
        .iter()
        .find(|(_, result)| is_aborted(result))
        .unwrap_or_else(|| panic!("the socket was never aborted: {after:?}"));
    let reset_ms = aborted_at.duration_since(changed).as_millis();
    let recovered_ms = recovered_at.duration_since(changed).as_millis();
    eprintln!(
        "endpoint removed -> socket aborted: {reset_ms} ms; -> answered by {}: {recovered_ms} ms",
        kept.name()
    );
    assert!(
        recovered_at.duration_since(changed) < REACTION_BOUND,
        "answered again only after {recovered_ms} ms"
    );
    for (_, result) in after.iter().filter(|(at, _)| at > recovered_at) {
        match result {
            CallResult::Ok { backend, peer, .. } => {
                assert_eq!(backend, kept.name());
                assert_eq!(*peer, vip(53), "the reply must come from the VIP");
            }
            CallResult::Failed { error, .. } => panic!("failed after recovering: {error}"),
        }
    }

    // Straight to the pod: never aborted. It stays connected to the dead
    // pod, so it sees that pod's ICMP errors (an aborted, unconnected
    // socket would not).
    let attempts = direct.finish();
    let after: Vec<&CallResult> = attempts
        .iter()
        .filter(|(at, _)| *at > changed)
        .map(|(_, result)| result)
        .collect();
    for result in &after {
        match result {
            CallResult::Ok { backend, peer, .. } => {
                assert_eq!(*backend, old);
                assert_eq!(*peer, direct_target);
            }
            // A datagram in flight when the pod died is never answered.
            CallResult::Failed { kind, error, .. } => assert!(
                matches!(kind, FailureKind::Refused | FailureKind::Timeout),
                "the direct socket failed otherwise than refused or timed out: {error}"
            ),
        }
    }
    assert!(
        after.iter().any(|result| matches!(
            result,
            CallResult::Failed {
                kind: FailureKind::Refused,
                ..
            }
        )),
        "the direct socket never saw the pod go: {after:?}"
    );

    assert_eq!(
        metric(
            &web,
            1,
            "skiff_udp_socket_resets_total{namespace=\"default\",service=\"web\"}"
        ),
        Some(1)
    );
    let log = web.testbed.agent_log(1);
    assert!(log.contains("UDP socket reset"), "{log}");
}

//! End to end: the real `kubectl exec` (with stdin, with a terminal),
//! `kubectl cp` and `kubectl attach` into a pod of the busybox image,
//! through skiff-control to the pod's node agent, whose
//! kubelet API serves only the API server's client certificate.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::{
    ffi::OsStr,
    io::Write,
    path::Path,
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use skiff_tests::{Node, Testbed};

const TIMEOUT: Duration = Duration::from_secs(60);

fn pod_manifest() -> &'static str {
    r#"{
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": { "name": "shell" },
  "spec": {
    "containers": [{
      "name": "main",
      "image": "skiff/busybox",
      "command": ["sleep", "3600"],
      "env": [{ "name": "GREETING", "value": "hello from the container" }]
    }, {
      "name": "talker",
      "image": "skiff/busybox",
      "command": ["sh", "-c", "while true; do echo tick; sleep 0.2; done"]
    }]
  }
}"#
}

/// `kubectl args`, `input` on its stdin.
fn kubectl(testbed: &Testbed, args: &[&str], input: &[u8]) -> Output {
    let mut command = testbed.kubectl().unwrap();
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn wait_running(testbed: &Testbed, pod: &str) {
    let started = Instant::now();
    loop {
        let out = kubectl(
            testbed,
            &["get", "pod", pod, "-o", "jsonpath={.status.phase}"],
            b"",
        );
        if text(&out.stdout) == "Running" {
            return;
        }
        assert!(started.elapsed() < TIMEOUT, "{pod} is not running: {out:?}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// A shell command line running `command` (for `script -c`).
fn shell_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|word| format!("'{}'", word.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `curl` of the kubelet API from the node's netns with `identity`
/// (certificate and key), or none.
fn curl_kubelet(node: &Node, identity: Option<[&Path; 2]>) -> Output {
    let mut command = node.command("curl");
    command.args(["-s", "-k", "--max-time", "5", "-w", "%{http_code}"]);
    if let Some([cert, key]) = identity {
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    command
        .arg(format!(
            "https://{}:10250/containerLogs/default/shell/main",
            node.ip()
        ))
        .output()
        .unwrap()
}

#[test]
fn kubectl_exec_and_cp_reach_the_container_through_the_api_server() {
    let mut testbed = Testbed::start_running_pods(1).unwrap();
    testbed.start_control(&[]).unwrap();
    let out = kubectl(&testbed, &["apply", "-f", "-"], pod_manifest().as_bytes());
    assert!(out.status.success(), "{out:?}");
    wait_running(&testbed, "shell");

    // Output on both streams, and the exit code.
    let script = "echo out; echo err >&2; exit 3";
    let out = kubectl(
        &testbed,
        &["exec", "shell", "-c", "main", "--", "sh", "-c", script],
        b"",
    );
    assert_eq!(text(&out.stdout), "out\n", "{out:?}");
    assert!(text(&out.stderr).contains("err\n"), "{out:?}");
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // The container's environment.
    let out = kubectl(
        &testbed,
        &[
            "exec",
            "shell",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "echo $GREETING",
        ],
        b"",
    );
    assert_eq!(text(&out.stdout), "hello from the container\n", "{out:?}");
    assert!(out.status.success(), "{out:?}");

    // stdin, to its end.
    let out = kubectl(
        &testbed,
        &["exec", "-i", "shell", "-c", "main", "--", "wc", "-c"],
        &[b'x'; 100_000],
    );
    assert_eq!(text(&out.stdout).trim(), "100000", "{out:?}");

    // A terminal: kubectl run under `script`, which gives it one, of 30
    // rows and 100 columns that kubectl passes on.
    let mut exec_tty = testbed.kubectl().unwrap();
    exec_tty.args([
        "exec",
        "-it",
        "shell",
        "-c",
        "main",
        "--",
        "sh",
        "-c",
        // The size kubectl sends comes after the command starts.
        r#"tty; while [ "$(stty size)" = "0 0" ]; do sleep 0.1; done; stty size; exit 4"#,
    ]);
    let out = Command::new("script")
        .args([
            OsStr::new("-qec"),
            OsStr::new(&format!("stty rows 30 cols 100; {}", shell_line(&exec_tty))),
            OsStr::new("/dev/null"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(text(&out.stdout).contains("/dev/pts/"), "{out:?}");
    assert!(text(&out.stdout).contains("30 100"), "{out:?}");
    assert_eq!(out.status.code(), Some(4), "{out:?}");

    // kubectl cp in and out (tar over exec, the image's busybox tar).
    let dir = std::env::temp_dir().join(format!("skiff-streaming-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let original = dir.join("original");
    let contents: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&original, &contents).unwrap();
    let cp = |from: &str, to: &str| kubectl(&testbed, &["cp", "-c", "main", from, to], b"");
    let out = cp(original.to_str().unwrap(), "shell:/copied");
    assert!(out.status.success(), "{out:?}");
    let out = kubectl(
        &testbed,
        &["exec", "shell", "-c", "main", "--", "wc", "-c", "/copied"],
        b"",
    );
    assert!(text(&out.stdout).starts_with("200000"), "{out:?}");
    let back = dir.join("back");
    let out = cp("shell:/copied", back.to_str().unwrap());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&back).unwrap(), contents);
    std::fs::remove_dir_all(&dir).unwrap();

    // attach: what the container writes from then on, until kubectl is
    // stopped.
    let mut attach = testbed.kubectl().unwrap();
    attach.args(["attach", "shell", "-c", "talker"]);
    let out = Command::new("timeout")
        .arg("3")
        .arg(attach.get_program())
        .args(attach.get_args())
        .output()
        .unwrap();
    assert!(text(&out.stdout).contains("tick\n"), "{out:?}");

    // A client that leaves takes its command with it: the command is seen
    // running in the container first, so its absence later means
    // something.
    let ps = || {
        let out = kubectl(&testbed, &["exec", "shell", "-c", "main", "--", "ps"], b"");
        assert!(text(&out.stdout).contains("sleep 3600"), "{out:?}");
        text(&out.stdout)
    };
    let mut client = testbed.kubectl().unwrap();
    let mut client = client
        .args(["exec", "shell", "-c", "main", "--", "sleep", "1000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    skiff_tests::eventually("the exec's sleep to run in the container", TIMEOUT, || {
        ps().contains("sleep 1000").then_some(())
    });
    client.kill().unwrap();
    client.wait().unwrap();
    skiff_tests::eventually("the exec to end with its client", TIMEOUT, || {
        (!ps().contains("sleep 1000")).then_some(())
    });

    // Not a container of the pod: refused before anything runs.
    let out = kubectl(
        &testbed,
        &["exec", "shell", "-c", "other", "--", "true"],
        b"",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("container other is not valid"),
        "{out:?}"
    );

    // The kubelet API itself: no client certificate, no TLS session; the
    // cluster's admin certificate is not the API server's.
    let node = testbed.cluster().node(1).clone();
    let out = curl_kubelet(&node, None);
    assert!(!out.status.success(), "{out:?}");
    let pki = testbed.kubelet_client_identity()[0]
        .parent()
        .unwrap()
        .to_owned();
    let (admin_cert, admin_key) = (pki.join("admin.crt"), pki.join("admin.key"));
    let out = curl_kubelet(&node, Some([&admin_cert, &admin_key]));
    assert!(text(&out.stdout).ends_with("403"), "{out:?}");
    let [cert, key] = testbed.kubelet_client_identity();
    let out = curl_kubelet(&node, Some([&cert, &key]));
    assert!(text(&out.stdout).ends_with("200"), "{out:?}");
}

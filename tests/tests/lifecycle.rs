//! End to end, the pod lifecycle through skiff-control, a skiff-agent with
//! `--run-pods` and the real `kubectl`: init containers run in order, each
//! to success before the next, with `Init:0/2`, `Init:1/2`, `Init:Error`
//! and `Init:CrashLoopBackOff` in `kubectl get pods`; a sidecar keeps
//! running beside the app container; a postStart hook runs, and one that
//! fails kills its container; a failed container's last log lines become
//! its termination message.
//!
//! The containers share a hostPath directory mounted at its own path, where
//! they write what they did and wait for the test's go-ahead files.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::{
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use skiff_tests::Testbed;

const NAMESPACE: &str = "lifecycle";
const TIMEOUT: Duration = Duration::from_secs(60);

/// A directory the test and the pods share, removed at the end.
struct Shared(PathBuf);

impl Shared {
    fn new(testbed: &Testbed) -> Shared {
        let dir =
            std::env::temp_dir().join(format!("{}-lifecycle", testbed.cluster().prefix().as_str()));
        std::fs::create_dir_all(&dir).expect("the shared directory is created");
        Shared(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    fn go(&self, name: &str) {
        std::fs::write(self.path(name), "").expect("the go-ahead file is written");
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A shell container that waits for `<dir>/<gate>` (if any), then appends
/// its name to `<dir>/<pod>` and runs `then`.
fn step(dir: &Path, pod: &str, name: &str, gate: Option<&str>, then: &str) -> String {
    let dir = dir.display();
    let wait = gate.map_or_else(String::new, |gate| {
        format!("while [ ! -e {dir}/{gate} ]; do sleep 0.1; done; ")
    });
    format!(
        r#"
      - name: {name}
        image: skiff/busybox
        command: ["sh", "-c", "{wait}echo {name} >> {dir}/{pod}; {then}"]
        volumeMounts:
        - name: shared
          mountPath: {dir}"#
    )
}

fn pod(dir: &Path, name: &str, restart: &str, init: &[String], apps: &[String]) -> String {
    let shown = dir.display();
    format!(
        r#"
---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  restartPolicy: {restart}
  terminationGracePeriodSeconds: 1
  volumes:
  - name: shared
    hostPath:
      path: {shown}
  initContainers:{}
  containers:{}
"#,
        init.concat(),
        apps.concat()
    )
}

/// The manifests: the namespace and one pod per behaviour.
fn manifests(shared: &Shared) -> String {
    let dir = &shared.0;
    let forever = "exec sleep 3600";
    let post_start = format!(
        r#"
        lifecycle:
          postStart:
            exec:
              command: ["sh", "-c", "echo hook >> {}/hook"]"#,
        dir.display()
    );
    let ordered = pod(
        dir,
        "ordered",
        "Always",
        &[
            step(dir, "ordered", "one", Some("go-one"), "true"),
            step(dir, "ordered", "two", Some("go-two"), "true"),
        ],
        &[step(dir, "ordered", "app", None, forever) + &post_start],
    );
    let failing = |name: &str, restart: &str| {
        pod(
            dir,
            name,
            restart,
            &[step(dir, name, "init", None, "exit 3")],
            &[step(dir, name, "app", None, forever)],
        )
    };
    // The sidecar counts as started once its startup probe finds the
    // test's go-ahead.
    let startup = format!(
        r#"
        startupProbe:
          periodSeconds: 1
          exec:
            command: ["test", "-e", "{}/proxy-up"]"#,
        dir.display()
    );
    let sidecar = step(dir, "with-sidecar", "proxy", None, forever).replace(
        "        image: skiff/busybox",
        "        image: skiff/busybox\n        restartPolicy: Always",
    ) + &startup;
    let with_sidecar = pod(
        dir,
        "with-sidecar",
        "Always",
        &[sidecar],
        &[step(dir, "with-sidecar", "main", None, forever)],
    );
    let message = pod(
        dir,
        "last-words",
        "Never",
        &[],
        &[
            step(dir, "last-words", "last", None, "echo goodbye; exit 4")
                + "\n        terminationMessagePolicy: FallbackToLogsOnError",
        ],
    )
    .replace("  initContainers:\n", "");
    let failing_hook = r#"
        lifecycle:
          postStart:
            exec:
              command: ["sh", "-c", "exit 7"]"#;
    let bad_hook = pod(
        dir,
        "bad-hook",
        "Never",
        &[],
        &[step(dir, "bad-hook", "hooked", None, forever) + failing_hook],
    )
    .replace("  initContainers:\n", "");
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n{ordered}{}{}{with_sidecar}{message}{bad_hook}",
        failing("fails", "Never"),
        failing("loops", "Always"),
    )
}

fn kubectl(testbed: &Testbed, args: &[&str], input: &str) -> String {
    (testbed.run_kubectl(args, input)).unwrap_or_else(|error| panic!("{error}"))
}

/// The READY and STATUS columns of `kubectl get pod <name>`.
fn columns(testbed: &Testbed, name: &str) -> (String, String) {
    let row = kubectl(
        testbed,
        &["get", "pod", name, "-n", NAMESPACE, "--no-headers"],
        "",
    );
    let cells: Vec<&str> = row.split_whitespace().collect();
    (cells[1].to_owned(), cells[2].to_owned())
}

fn get(testbed: &Testbed, name: &str) -> Value {
    let json = kubectl(
        testbed,
        &["get", "pod", name, "-n", NAMESPACE, "-o", "json"],
        "",
    );
    serde_json::from_str(&json).expect("kubectl prints JSON")
}

/// Polls until `check` passes; panics with the last value seen after
/// `TIMEOUT`.
fn eventually<T: std::fmt::Debug>(
    what: &str,
    mut seen: impl FnMut() -> T,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let value = seen();
        if check(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last seen {value:#?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn status_becomes(testbed: &Testbed, name: &str, status: &str) {
    eventually(
        &format!("{name} shown as {status}"),
        || columns(testbed, name),
        |(_, shown)| shown == status,
    );
}

/// Waits for what the containers wrote to `<shared>/<file>`: a process
/// shown running may not have written yet.
fn lines_become(shared: &Shared, file: &str, lines: &str) {
    eventually(
        &format!("{file} to read {lines:?}"),
        || shared.read(file),
        |read| read == lines,
    );
}

#[test]
fn init_containers_sidecars_hooks_and_termination_messages() {
    let mut testbed = Testbed::start_running_pods(1).unwrap();
    testbed.start_control(&["--leader-elect=false"]).unwrap();
    let shared = Shared::new(&testbed);
    kubectl(&testbed, &["apply", "-f", "-"], &manifests(&shared));

    // Init containers in order, each to success before the next.
    status_becomes(&testbed, "ordered", "Init:0/2");
    assert_eq!(
        shared.read("ordered"),
        "",
        "nothing ran before its go-ahead"
    );
    shared.go("go-one");
    status_becomes(&testbed, "ordered", "Init:1/2");
    assert_eq!(shared.read("ordered"), "one\n");
    shared.go("go-two");
    eventually(
        "ordered Running",
        || columns(&testbed, "ordered"),
        |(ready, status)| status == "Running" && ready == "1/1",
    );
    lines_become(&shared, "ordered", "one\ntwo\napp\n");
    let ordered = get(&testbed, "ordered");
    let inits = &ordered["status"]["initContainerStatuses"];
    for (index, name) in ["one", "two"].into_iter().enumerate() {
        assert_eq!(inits[index]["name"], name);
        assert_eq!(inits[index]["state"]["terminated"]["reason"], "Completed");
    }
    assert!(
        (ordered["status"]["conditions"].as_array().unwrap().iter())
            .any(|c| c["type"] == "Initialized" && c["status"] == "True")
    );

    // postStart ran in the app container.
    lines_become(&shared, "hook", "hook\n");

    // A failed init container fails a Never pod and holds an Always pod
    // in CrashLoopBackOff; neither's app container runs.
    status_becomes(&testbed, "fails", "Init:Error");
    let fails = get(&testbed, "fails");
    assert_eq!(fails["status"]["phase"], "Failed");
    assert_eq!(
        fails["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );
    status_becomes(&testbed, "loops", "Init:CrashLoopBackOff");
    assert!(shared.read("fails").starts_with("init\n"));
    assert!(!shared.read("fails").contains("app"));
    assert!(!shared.read("loops").contains("app"));

    // The app container waits for the sidecar to start, which keeps
    // running beside it.
    status_becomes(&testbed, "with-sidecar", "Init:0/1");
    lines_become(&shared, "with-sidecar", "proxy\n");
    shared.go("proxy-up");
    eventually(
        "with-sidecar Running",
        || columns(&testbed, "with-sidecar"),
        |(ready, status)| status == "Running" && ready == "2/2",
    );
    let sidecar = get(&testbed, "with-sidecar");
    assert!(sidecar["status"]["initContainerStatuses"][0]["state"]["running"].is_object());
    assert_eq!(
        sidecar["status"]["initContainerStatuses"][0]["started"],
        true
    );
    lines_become(&shared, "with-sidecar", "proxy\nmain\n");

    // The end of a failed container's log is its termination message.
    status_becomes(&testbed, "last-words", "Error");
    let last = get(&testbed, "last-words");
    let terminated = &last["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 4);
    assert_eq!(terminated["message"], "goodbye\n");

    // A failed postStart hook kills its container, and says so.
    status_becomes(&testbed, "bad-hook", "Error");
    let bad_hook = get(&testbed, "bad-hook");
    let terminated = &bad_hook["status"]["containerStatuses"][0]["state"]["terminated"];
    let message = terminated["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("FailedPostStartHook: "), "{terminated}");
    // `sleep` is the container's pid 1 and has no SIGTERM handler, so the
    // kernel ignores the TERM and the grace period ends with a KILL.
    assert_eq!(terminated["exitCode"], 137, "killed after the grace period");
}

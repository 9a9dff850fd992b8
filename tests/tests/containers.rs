//! End to end: pods' containers run by the node's real skiff-agent with
//! runc from its image store (pods written straight to etcd, as the API
//! server stores them once scheduled): the test image runs isolated from
//! the node and other pods, as the user its securityContext names; a
//! missing image waits as ErrImageNeverPull until it is imported; an exit
//! while the agent is down is reported with its real code.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::{path::Path, time::Duration};

use serde_json::{Value, json};
use skiff_tests::{Testbed, agent_binary, bound_pod, eventually, image_dir};

const TIMEOUT: Duration = Duration::from_secs(20);
/// `cargo xtask images`' busybox, which the agents import at start.
const BUSYBOX: &str = "skiff/busybox";

fn pod_key(name: &str) -> String {
    format!("/registry/pods/default/{name}")
}

/// A pod of one container running `script` with the image's `sh`, bound
/// to node1.
fn pod(name: &str, image: &str, script: &str, extra: Value) -> Value {
    let mut container = json!({
        "name": "main",
        "image": image,
        "command": ["sh", "-c", script],
    });
    if let (Some(container), Some(extra)) = (container.as_object_mut(), extra.as_object()) {
        container.extend(extra.clone());
    }
    bound_pod(
        name,
        json!({
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
        }),
    )
}

fn status(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]
}

fn running(pod: &Value) -> bool {
    status(pod)["state"]["running"].is_object()
}

/// Polls the pod until `test` passes; panics with the last version seen.
fn wait_for(testbed: &Testbed, name: &str, what: &str, test: impl Fn(&Value) -> bool) -> Value {
    testbed.wait_for_stored(&pod_key(name), what, TIMEOUT, test)
}

/// `argv` run in pod `name`'s container; its stdout.
fn exec(testbed: &Testbed, name: &str, argv: &[&str]) -> String {
    let out = testbed
        .exec_in_container(1, ("default", name), "main", argv)
        .unwrap();
    assert!(out.status.success(), "{argv:?} in {name}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Imports the busybox image under another name: its OCI archive with the
/// name in `index.json` changed.
fn import_as(state_dir: &Path, reference: &str) {
    let source = image_dir().join("busybox.tar");
    let mut archive = tar::Archive::new(std::fs::File::open(&source).unwrap());
    let renamed = state_dir.join("renamed.tar");
    let mut out = tar::Builder::new(std::fs::File::create(&renamed).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let path = entry.path().unwrap().into_owned();
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
        if path == Path::new("index.json") {
            let mut index: Value = serde_json::from_slice(&content).unwrap();
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] =
                json!(reference);
            content = serde_json::to_vec(&index).unwrap();
            header.set_size(content.len() as u64);
            header.set_cksum();
        }
        out.append_data(&mut header, &path, content.as_slice())
            .unwrap();
    }
    out.finish().unwrap();
    let output = std::process::Command::new(agent_binary().unwrap())
        .args(["images", "import", "--state-dir"])
        .arg(state_dir)
        .arg(&renamed)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn an_imported_image_runs_isolated_as_the_user_its_security_context_names() {
    let mut testbed = Testbed::start_running_pods(1).unwrap();
    testbed.start_control(&[]).unwrap();
    let store = testbed.store();
    let as_app = json!({ "securityContext": { "runAsUser": 1000, "runAsGroup": 1000 } });
    store
        .put(&pod_key("app"), &pod("app", BUSYBOX, "sleep 1000", as_app))
        .unwrap();
    store
        .put(
            &pod_key("other"),
            &pod("other", BUSYBOX, "sleep 2000", json!({})),
        )
        .unwrap();
    let app = wait_for(&testbed, "app", "app running", running);
    wait_for(&testbed, "other", "other running", running);
    let image_id = status(&app)["imageID"].as_str().unwrap();
    assert!(
        image_id.starts_with("docker.io/skiff/busybox@sha256:"),
        "{image_id}"
    );
    assert_eq!(status(&app)["containerID"], "runc://default_app_main");

    let id = exec(&testbed, "app", &["id"]);
    assert!(id.starts_with("uid=1000 gid=1000"), "{id}");
    // Its own PID namespace: its pid 1 is its command, and no process of
    // the node or of the other pod is there.
    let ps = exec(&testbed, "app", &["ps", "-o", "pid,args"]);
    let processes: Vec<&str> = ps.lines().skip(1).map(str::trim).collect();
    assert_eq!(processes.first(), Some(&"1 sleep 1000"), "{ps}");
    assert!(
        !ps.contains("sleep 2000") && !ps.contains("skiff-agent"),
        "{ps}"
    );
    // Its own filesystem: the node's /run (netns, skiff's state) is not
    // there.
    assert!(Path::new("/run/netns").exists());
    exec(&testbed, "app", &["test", "!", "-e", "/run/netns"]);
    // The pod's hostname and /etc files.
    assert_eq!(exec(&testbed, "app", &["hostname"]), "app\n");
    let hosts = exec(&testbed, "app", &["cat", "/etc/hosts"]);
    let ip = app["status"]["podIP"].as_str().unwrap();
    assert!(hosts.contains(&format!("{ip}\tapp\n")), "{hosts}");
    let resolv = exec(&testbed, "app", &["cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );

    // runAsNonRoot with an image that runs as root is refused.
    let non_root = json!({ "securityContext": { "runAsNonRoot": true } });
    store
        .put(
            &pod_key("rooted"),
            &pod("rooted", BUSYBOX, "sleep 1000", non_root),
        )
        .unwrap();
    let refused = wait_for(&testbed, "rooted", "a refusal", |p| {
        status(p)["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    let message = status(&refused)["state"]["waiting"]["message"].as_str();
    assert!(
        message.is_some_and(|m| m.contains("runAsNonRoot")),
        "{refused:#?}"
    );
}

#[test]
fn a_missing_image_waits_as_err_image_never_pull_until_it_is_imported() {
    let mut testbed = Testbed::start_running_pods(1).unwrap();
    testbed.start_control(&[]).unwrap();
    let late = "skiff-test/late:1";
    testbed
        .store()
        .put(
            &pod_key("late"),
            &pod("late", late, "sleep 1000", json!({})),
        )
        .unwrap();
    let waiting = wait_for(&testbed, "late", "ErrImageNeverPull", |p| {
        status(p)["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    });
    let message = status(&waiting)["state"]["waiting"]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains(late) && message.contains("skiff-agent images import"),
        "{message}"
    );
    import_as(&testbed.agent_state_dir(1), "docker.io/skiff-test/late:1");
    let started = wait_for(&testbed, "late", "late running", running);
    let image_id = status(&started)["imageID"].as_str().unwrap();
    assert!(
        image_id.starts_with("docker.io/skiff-test/late@sha256:"),
        "{image_id}"
    );
}

#[test]
fn an_exit_while_the_agent_is_down_is_reported_with_its_real_code() {
    let mut testbed = Testbed::start_running_pods(1).unwrap();
    testbed.start_control(&[]).unwrap();
    // The container ends once /tmp/go exists, with code 7.
    let script = "until test -e /tmp/go; do sleep 0.1; done; exit 7";
    testbed
        .store()
        .put(&pod_key("exits"), &pod("exits", BUSYBOX, script, json!({})))
        .unwrap();
    wait_for(&testbed, "exits", "exits running", running);
    testbed.kill_agent(1);
    exec(&testbed, "exits", &["touch", "/tmp/go"]);
    let exit_file = testbed
        .agent_state_dir(1)
        .join("containers/default_exits_main/exit");
    eventually("the container to end", TIMEOUT, || {
        exit_file.exists().then_some(())
    });
    testbed.start_agent(1).unwrap();
    let done = wait_for(&testbed, "exits", "the exit reported", |p| {
        status(p)["state"]["terminated"].is_object()
    });
    assert_eq!(
        status(&done)["state"]["terminated"]["exitCode"],
        7,
        "{done:#?}"
    );
    assert_eq!(done["status"]["phase"], "Failed");
}

#[test]
fn a_memory_limit_is_enforced() {
    let mut testbed = Testbed::start_running_pods(1).unwrap();
    testbed.start_control(&[]).unwrap();
    // dd holds one 64 MiB block in memory: fine without a limit, killed
    // by the kernel's OOM killer in a 16 MiB cgroup.
    let script = "dd if=/dev/zero of=/dev/null bs=64M count=1";
    let limited = json!({ "resources": { "limits": { "memory": "16Mi" } } });
    let store = testbed.store();
    store
        .put(
            &pod_key("limited"),
            &pod("limited", BUSYBOX, script, limited),
        )
        .unwrap();
    store
        .put(&pod_key("free"), &pod("free", BUSYBOX, script, json!({})))
        .unwrap();
    let ended = |p: &Value| status(p)["state"]["terminated"].is_object();
    let free = wait_for(&testbed, "free", "the unlimited dd to end", ended);
    assert_eq!(
        status(&free)["state"]["terminated"]["exitCode"],
        0,
        "{free:#?}"
    );
    let limited = wait_for(&testbed, "limited", "the limited dd to end", ended);
    assert_eq!(
        status(&limited)["state"]["terminated"]["exitCode"],
        137,
        "the OOM killer's SIGKILL: {limited:#?}"
    );
}

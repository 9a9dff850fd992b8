//! The images `cargo xtask images` builds, imported by the agent's own
//! import (`skiff-agent images import|list|unpack` on a temporary store):
//! every reference resolves, a second import changes nothing, and the
//! busybox image's shell runs in its unpacked root; an agent running pods
//! imports them from its --image-dir at start.
use std::{path::Path, process::Command};

use skiff_tests::{Testbed, agent_binary, images::ensure_built};

fn agent(state: &Path, args: &[&str]) -> String {
    let output = Command::new(agent_binary().expect("cargo xtask build"))
        .arg("images")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .expect("skiff-agent runs");
    assert!(
        output.status.success(),
        "skiff-agent images {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

#[test]
fn built_images_import_list_and_run() {
    let images = ensure_built().expect("images build");
    let store = tempfile::tempdir().expect("tempdir");
    let archives = ["busybox", "echo", "iperf3", "redis"]
        .map(|name| images.join(format!("{name}.tar")).display().to_string());
    for archive in &archives {
        let out = agent(store.path(), &["import", archive]);
        assert!(out.starts_with("imported docker.io/"), "{out}");
    }
    let again = agent(store.path(), &["import", &archives[0]]);
    assert!(
        again.starts_with("already in the store, unchanged: docker.io/skiff/busybox:latest"),
        "{again}"
    );
    let list = agent(store.path(), &["list"]);
    for reference in [
        "docker.io/skiff/busybox:latest",
        "docker.io/skiff/echo:latest",
        "docker.io/skiff/iperf3:latest",
        "docker.io/library/redis:latest",
    ] {
        assert!(
            list.contains(reference),
            "{reference} missing from:\n{list}"
        );
    }

    let redis_layers = agent(store.path(), &["unpack", "redis"]);
    assert!(
        redis_layers
            .lines()
            .any(|dir| Path::new(dir).join("usr/bin/redis-server").exists()),
        "no layer of redis holds usr/bin/redis-server:\n{redis_layers}"
    );
    let busybox_layers = agent(store.path(), &["unpack", "skiff/busybox"]);
    let [root] = busybox_layers.lines().collect::<Vec<_>>()[..] else {
        panic!("busybox has one layer:\n{busybox_layers}");
    };
    let output = Command::new("chroot")
        .args([root, "/bin/sh", "-c", "echo $((6 * 7)) $(id -u nobody)"])
        .output()
        .expect("chroot runs");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "42 65534\n",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An agent running pods imports the image directory at start, so the
/// images are in its store before any pod asks for them.
#[test]
fn an_agent_imports_its_image_dir_at_start() {
    let testbed = Testbed::start_running_pods(1).expect("testbed");
    let list = agent(&testbed.agent_state_dir(1), &["list"]);
    for reference in [
        "docker.io/skiff/busybox:latest",
        "docker.io/library/redis:latest",
    ] {
        assert!(
            list.contains(reference),
            "{reference} missing from:\n{list}"
        );
    }
}

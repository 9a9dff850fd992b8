//! `skiff-agent status` on a node whose pins an agent without IPv6 left:
//! the IPv4 maps only, made here with bpftool in their pinned layout. The
//! report lists what is there and says the IPv6 maps are absent; once they
//! are pinned too, it says so.
use std::{
    mem::size_of,
    path::{Path, PathBuf},
    process::Command,
};

use proxy_common::{
    Backend, Backend6, BackendId, BackendSlotKey, FrontendStats, MAPS_DIR, ServiceKey, ServiceKey6,
    ServiceValue, drop_reason, map_names,
};
use skiff_tests::{BPFFS_ROOT, Prefix, agent_binary};

/// A bpffs directory of this test's own, removed when it ends.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bpftool(args: &[&str]) {
    let output = Command::new("bpftool")
        .args(args)
        .output()
        .expect("bpftool runs");
    assert!(
        output.status.success(),
        "bpftool {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Pins an empty map of `kind` at `<maps>/<name>`.
fn create(maps: &Path, name: &str, kind: &str, key: usize, value: usize, entries: u32) {
    let path = maps.join(name);
    bpftool(&[
        "map",
        "create",
        path.to_str().expect("a UTF-8 path"),
        "type",
        kind,
        "key",
        &key.to_string(),
        "value",
        &value.to_string(),
        "entries",
        &entries.to_string(),
        "name",
        name,
    ]);
}

/// Writes `key` → `value` (raw bytes) into the map pinned at `<maps>/<name>`.
fn update(maps: &Path, name: &str, key: &[u8], value: &[u8]) {
    let path = maps.join(name);
    let hex = |bytes: &[u8]| bytes.iter().map(|b| b.to_string()).collect::<Vec<_>>();
    let mut args = vec![
        "map",
        "update",
        "pinned",
        path.to_str().expect("a UTF-8 path"),
    ];
    let (key, value) = (hex(key), hex(value));
    args.push("key");
    args.extend(key.iter().map(String::as_str));
    args.push("value");
    args.extend(value.iter().map(String::as_str));
    bpftool(&args);
}

fn words(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|word| word.to_ne_bytes()).collect()
}

/// An address, port and protocol as `ServiceKey` and `Backend` lay them out.
fn address_port(address: [u8; 4], port: u16, protocol: u8) -> Vec<u8> {
    let mut bytes = address.to_vec();
    bytes.extend(port.to_be_bytes());
    bytes.extend([protocol, 0]);
    bytes
}

fn status(pins: &Path) -> String {
    let output = Command::new(agent_binary().expect("skiff-agent is built"))
        .arg("status")
        .arg("--bpffs")
        .arg(pins)
        .output()
        .expect("skiff-agent status runs");
    assert!(
        output.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("a UTF-8 report")
}

#[test]
fn status_reads_an_ipv4_only_agents_pins_and_reports_the_ipv6_maps_absent() {
    let pins = Pins(Path::new(BPFFS_ROOT).join(format!("{}-status", Prefix::random())));
    let maps = pins.0.join(MAPS_DIR);
    std::fs::create_dir_all(&maps).expect("a directory on bpffs");
    let id = size_of::<BackendId>();
    create(
        &maps,
        map_names::SERVICES,
        "hash",
        size_of::<ServiceKey>(),
        size_of::<ServiceValue>(),
        16,
    );
    create(
        &maps,
        map_names::BACKENDS,
        "hash",
        id,
        size_of::<Backend>(),
        16,
    );
    create(
        &maps,
        map_names::BACKEND_SLOTS,
        "hash",
        size_of::<BackendSlotKey>(),
        id,
        16,
    );
    create(
        &maps,
        map_names::FRONTEND_STATS,
        "percpu_hash",
        4,
        size_of::<FrontendStats>(),
        16,
    );
    create(
        &maps,
        map_names::DROPS,
        "percpu_array",
        4,
        8,
        drop_reason::COUNT,
    );
    const UDP: u8 = 17;
    // 10.96.0.10:53/UDP, frontend 7, one backend (id 3) in slot 0.
    update(
        &maps,
        map_names::SERVICES,
        &address_port([10, 96, 0, 10], 53, UDP),
        &words(&[7, 1, 0, 0]),
    );
    update(
        &maps,
        map_names::BACKEND_SLOTS,
        &words(&[7, 0]),
        &words(&[3]),
    );
    update(
        &maps,
        map_names::BACKENDS,
        &words(&[3]),
        &address_port([10, 244, 1, 2], 5353, UDP),
    );

    let report = status(&pins.0);
    let lines: Vec<&str> = report.lines().collect();
    assert!(lines[1].starts_with("10.96.0.10:53/UDP "), "{report}");
    assert_eq!(lines[1].split_whitespace().nth(3), Some("1"), "{report}");
    assert_eq!(lines[2], "  -> 10.244.1.2:5353", "{report}");
    assert_eq!(lines.last(), Some(&"ipv6 maps: absent"), "{report}");

    create(
        &maps,
        map_names::SERVICES6,
        "hash",
        size_of::<ServiceKey6>(),
        size_of::<ServiceValue>(),
        16,
    );
    create(
        &maps,
        map_names::BACKENDS6,
        "hash",
        id,
        size_of::<Backend6>(),
        16,
    );
    let report = status(&pins.0);
    assert!(
        report
            .lines()
            .nth(1)
            .is_some_and(|line| line.starts_with("10.96.0.10:53/UDP ")),
        "{report}"
    );
    assert_eq!(report.lines().last(), Some("ipv6 maps: pinned"), "{report}");
}

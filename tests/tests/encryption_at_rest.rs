//! Secrets encrypted at rest against a real skiff-control on etcd, as
//! kube-apiserver's `--encryption-provider-config`: the raw etcd value is
//! `k8s:enc:aesgcm:v1:<key>:` and ciphertext, the API serves the plain
//! data, a key rotation (new first key, restart, `skiff-control secrets
//! re-encrypt`) moves every value to the new key, and a Secret written
//! before encryption was enabled still reads and is encrypted by the
//! rewrite.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use skiff_tests::Testbed;

const BEFORE: &str = "/registry/secrets/default/before";
const AFTER: &str = "/registry/secrets/default/after";

/// An EncryptionConfiguration for Secrets with aesgcm `keys` (name, key
/// byte), then identity when `identity`.
fn write_config(dir: &Path, name: &str, keys: &[(&str, u8)], identity: bool) -> PathBuf {
    let mut text = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n".to_owned();
    for (key, byte) in keys {
        text += &format!(
            "      - name: {key}\n        secret: {}\n",
            BASE64_STANDARD.encode([*byte; 32])
        );
    }
    if identity {
        text += "  - identity: {}\n";
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn restart_with(testbed: &mut Testbed, config: &Path) {
    testbed.stop_control();
    let flag = format!("--encryption-provider-config={}", config.display());
    testbed
        .start_control(&["--leader-elect=false", &flag])
        .unwrap();
}

fn raw(testbed: &Testbed, key: &str) -> Vec<u8> {
    testbed
        .store()
        .get_raw(key)
        .unwrap()
        .expect("the key is stored")
}

fn password(testbed: &Testbed, name: &str) -> String {
    let secret = testbed.kubectl_json(&["get", "secret", name]);
    let encoded = secret["data"]["password"].as_str().expect("data.password");
    String::from_utf8(BASE64_STANDARD.decode(encoded).unwrap()).unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// `N rewritten, M already current`, the report's last line.
fn summary(report: &str) -> (usize, usize) {
    let last = report.lines().last().unwrap_or_default();
    let numbers: Vec<usize> = last
        .split(' ')
        .filter_map(|word| word.parse().ok())
        .collect();
    assert!(
        last.ends_with("already current") && numbers.len() == 2,
        "{report}"
    );
    (numbers[0], numbers[1])
}

#[test]
fn secrets_are_encrypted_in_etcd_and_keys_rotate() {
    // No agent: only the API server and etcd are under test (the agent
    // reads Secrets from etcd itself and does not decrypt them yet).
    let mut testbed = Testbed::start_running_pods_except(1, &[1]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    testbed.start_control(&["--leader-elect=false"]).unwrap();
    testbed.kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            "before",
            "--from-literal=password=plain-before-value",
        ],
        "",
    );
    assert!(raw(&testbed, BEFORE).starts_with(b"{"), "stored as JSON");

    let key1 = write_config(dir, "key1.yaml", &[("key1", 1)], true);
    restart_with(&mut testbed, &key1);
    testbed.kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            "after",
            "--from-literal=password=plain-after-value",
        ],
        "",
    );
    let stored = raw(&testbed, AFTER);
    assert!(
        stored.starts_with(b"k8s:enc:aesgcm:v1:key1:"),
        "{}",
        String::from_utf8_lossy(&stored)
    );
    assert!(!contains(&stored, "plain-after-value"));
    assert!(!contains(
        &stored,
        &BASE64_STANDARD.encode("plain-after-value")
    ));
    assert_eq!(password(&testbed, "after"), "plain-after-value");
    assert_eq!(password(&testbed, "before"), "plain-before-value");

    let rotating = write_config(dir, "rotating.yaml", &[("key2", 2), ("key1", 1)], true);
    restart_with(&mut testbed, &rotating);
    assert_eq!(password(&testbed, "after"), "plain-after-value");
    let first = summary(&testbed.reencrypt_secrets(&rotating).unwrap());
    assert!(first.0 >= 2, "both Secrets rewritten: {first:?}");
    for key in [BEFORE, AFTER] {
        let stored = raw(&testbed, key);
        assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:key2:"), "{key}");
    }
    assert!(!contains(&raw(&testbed, BEFORE), "plain-before-value"));
    let again = summary(&testbed.reencrypt_secrets(&rotating).unwrap());
    assert_eq!(
        again,
        (0, first.0 + first.1),
        "a second run rewrites nothing"
    );

    let key2 = write_config(dir, "key2.yaml", &[("key2", 2)], false);
    restart_with(&mut testbed, &key2);
    assert_eq!(password(&testbed, "after"), "plain-after-value");
    assert_eq!(password(&testbed, "before"), "plain-before-value");
    let listed = testbed.kubectl_json(&["get", "secrets"]);
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item["metadata"]["name"].as_str())
        .collect();
    assert!(
        names.contains(&"before") && names.contains(&"after"),
        "{names:?}"
    );

    // Without the key a value names, a read fails naming the key: never
    // the ciphertext, never a fallback.
    let key3 = write_config(dir, "key3.yaml", &[("key3", 3)], true);
    restart_with(&mut testbed, &key3);
    let refused = testbed
        .run_kubectl(&["get", "secret", "after"], "")
        .expect_err("a value no key opens is refused");
    assert!(format!("{refused:#}").contains(AFTER), "{refused:#}");
    let listed = testbed.kubectl_json(&["get", "secrets"]);
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|item| item["metadata"]["name"] != "after"),
        "a list skips what does not decrypt"
    );
}

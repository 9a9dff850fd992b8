use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{Encryption, EncryptionError, StoredResource};

const STORED: &[StoredResource] = &[
    StoredResource {
        group: "",
        plural: "secrets",
        storage: "/registry/secrets",
    },
    StoredResource {
        group: "",
        plural: "configmaps",
        storage: "/registry/configmaps",
    },
    StoredResource {
        group: "apps",
        plural: "deployments",
        storage: "/registry/deployments",
    },
];

const KEY: &str = "/registry/secrets/default/s";
const PLAIN: &[u8] = br#"{"data":{"password":"aHVudGVyMg=="}}"#;

fn secret(byte: u8, len: usize) -> String {
    STANDARD.encode(vec![byte; len])
}

fn config(resources: &str, providers: &str) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: {resources}\n  providers:\n{providers}"
    )
}

fn aesgcm(keys: &[(&str, u8)]) -> String {
    let mut text = "  - aesgcm:\n      keys:\n".to_owned();
    for (name, byte) in keys {
        text += &format!(
            "      - name: {name}\n        secret: {}\n",
            secret(*byte, 32)
        );
    }
    text
}

fn load(resources: &str, providers: &str) -> Encryption {
    Encryption::parse(&config(resources, providers), STORED).expect("the configuration loads")
}

fn refusal(resources: &str, providers: &str) -> String {
    Encryption::parse(&config(resources, providers), STORED)
        .expect_err("the configuration is refused")
}

#[test]
fn each_provider_round_trips_with_kube_prefix() {
    let cases = [
        (aesgcm(&[("key1", 1)]), "k8s:enc:aesgcm:v1:key1:"),
        (
            format!(
                "  - secretbox:\n      keys:\n      - name: box\n        secret: {}\n",
                secret(2, 32)
            ),
            "k8s:enc:secretbox:v1:box:",
        ),
    ];
    for (providers, prefix) in cases {
        let encryption = load("[secrets]", &providers);
        let stored = encryption.seal(KEY, PLAIN.to_vec());
        assert!(stored.starts_with(prefix.as_bytes()), "{prefix}");
        assert!(!stored.windows(PLAIN.len()).any(|window| window == PLAIN));
        assert_eq!(&*encryption.open(KEY.as_bytes(), &stored).unwrap(), PLAIN);
        assert_ne!(
            stored,
            encryption.seal(KEY, PLAIN.to_vec()),
            "nonces are random"
        );
    }
}

#[test]
fn aesgcm_accepts_each_key_size() {
    for len in [16, 24, 32] {
        let providers = format!(
            "  - aesgcm:\n      keys:\n      - name: k\n        secret: {}\n",
            secret(3, len)
        );
        let encryption = load("[secrets]", &providers);
        let stored = encryption.seal(KEY, PLAIN.to_vec());
        assert_eq!(&*encryption.open(KEY.as_bytes(), &stored).unwrap(), PLAIN);
    }
}

#[test]
fn a_wrong_key_of_the_same_name_fails_naming_the_key() {
    let stored = load("[secrets]", &aesgcm(&[("key1", 1)])).seal(KEY, PLAIN.to_vec());
    let error = load("[secrets]", &aesgcm(&[("key1", 9)]))
        .open(KEY.as_bytes(), &stored)
        .unwrap_err();
    assert!(matches!(&error, EncryptionError::Decrypt { key, .. } if key == KEY));
    assert!(error.to_string().contains(KEY), "{error}");
}

#[test]
fn a_value_moved_to_another_key_fails() {
    let encryption = load("[secrets]", &aesgcm(&[("key1", 1)]));
    let stored = encryption.seal(KEY, PLAIN.to_vec());
    let moved = "/registry/secrets/default/other";
    assert!(encryption.open(moved.as_bytes(), &stored).is_err());
}

#[test]
fn reads_pick_the_provider_by_prefix_and_identity_reads_plain_values() {
    let identity_last = format!("{}  - identity: {{}}\n", aesgcm(&[("key1", 1)]));
    let encryption = load("[secrets]", &identity_last);
    assert_eq!(&*encryption.open(KEY.as_bytes(), PLAIN).unwrap(), PLAIN);
    assert!(!encryption.is_current(KEY.as_bytes(), PLAIN));
    let without_identity = load("[secrets]", &aesgcm(&[("key1", 1)]));
    let error = without_identity.open(KEY.as_bytes(), PLAIN).unwrap_err();
    assert!(error.to_string().contains("identity"), "{error}");
}

#[test]
fn resources_not_named_are_stored_as_they_are() {
    let encryption = load("[secrets]", &aesgcm(&[("key1", 1)]));
    let key = "/registry/configmaps/default/c";
    assert_eq!(encryption.seal(key, PLAIN.to_vec()), PLAIN);
    let sealed = encryption.seal(KEY, PLAIN.to_vec());
    assert!(
        encryption.open(key.as_bytes(), &sealed).is_err(),
        "never the ciphertext as plain"
    );
}

#[test]
fn wildcards_name_groups() {
    let everything = load("['*.*']", &aesgcm(&[("key1", 1)]));
    assert_eq!(everything.prefixes().count(), 3);
    let core = load("['*.']", &aesgcm(&[("key1", 1)]));
    assert_eq!(
        core.prefixes().collect::<Vec<_>>(),
        ["/registry/secrets/", "/registry/configmaps/"]
    );
    let apps = load("['*.apps']", &aesgcm(&[("key1", 1)]));
    assert_eq!(
        apps.prefixes().collect::<Vec<_>>(),
        ["/registry/deployments/"]
    );
}

#[test]
fn rotation_reads_old_keys_until_rewritten() {
    let key1 = load("[secrets]", &aesgcm(&[("key1", 1)]));
    let old = key1.seal(KEY, PLAIN.to_vec());
    let both = load("[secrets]", &aesgcm(&[("key2", 2), ("key1", 1)]));
    assert_eq!(&*both.open(KEY.as_bytes(), &old).unwrap(), PLAIN);
    assert!(!both.is_current(KEY.as_bytes(), &old));
    let rewritten = both.seal(KEY, both.open(KEY.as_bytes(), &old).unwrap().into_owned());
    assert!(rewritten.starts_with(b"k8s:enc:aesgcm:v1:key2:"));
    assert!(both.is_current(KEY.as_bytes(), &rewritten));
    let key2 = load("[secrets]", &aesgcm(&[("key2", 2)]));
    assert_eq!(&*key2.open(KEY.as_bytes(), &rewritten).unwrap(), PLAIN);
    let error = key2.open(KEY.as_bytes(), &old).unwrap_err();
    assert!(error.to_string().contains("no provider"), "{error}");
}

#[test]
fn json_configurations_load() {
    let json = format!(
        r#"{{"apiVersion":"apiserver.config.k8s.io/v1","kind":"EncryptionConfiguration","resources":[{{"resources":["secrets"],"providers":[{{"secretbox":{{"keys":[{{"name":"k","secret":"{}"}}]}}}}]}}]}}"#,
        secret(1, 32)
    );
    assert!(Encryption::parse(&json, STORED).is_ok());
}

#[test]
fn configuration_errors_name_the_field() {
    let cases = [
        (
            refusal(
                "[secrets]",
                &format!(
                    "  - aesgcm:\n      keys:\n      - name: k\n        secret: {}\n",
                    secret(1, 10)
                ),
            ),
            "resources[0].providers[0].aesgcm.keys[0].secret: Invalid value: aesgcm key \"k\" is 10 bytes; it must be 16, 24 or 32 bytes",
        ),
        (
            refusal(
                "[secrets]",
                &format!(
                    "  - secretbox:\n      keys:\n      - name: k\n        secret: {}\n",
                    secret(1, 16)
                ),
            ),
            "resources[0].providers[0].secretbox.keys[0].secret: Invalid value: secretbox key \"k\" is 16 bytes; it must be 32 bytes",
        ),
        (
            refusal("[secrets]", "  - aescbc:\n      keys: []\n"),
            "resources[0].providers[0].aescbc: Unsupported value: skiff-control supports the aesgcm, secretbox and identity providers, not aescbc",
        ),
        (
            refusal("[secrets]", "  - kms: {}\n"),
            "resources[0].providers[0].kms: Unsupported value: skiff-control supports the aesgcm, secretbox and identity providers, not kms",
        ),
        (
            refusal(
                "[secrets]",
                "  - aesgcm:\n      keys:\n      - name: k\n        secret: '!!'\n",
            ),
            "resources[0].providers[0].aesgcm.keys[0].secret: Invalid value: secret is not base64",
        ),
        (
            refusal("[secrets]", "  - aesgcm:\n      keys: []\n"),
            "resources[0].providers[0].aesgcm.keys: Required value: at least one key is required",
        ),
        (
            refusal("[widgets]", "  - identity: {}\n"),
            "resources[0].resources[0]: Invalid value: \"widgets\": not a resource skiff-control stores",
        ),
        (
            refusal(
                "[secrets]",
                "  - identity: {}\n    aesgcm:\n      keys: []\n",
            ),
            "resources[0].providers[0]: Invalid value: more than one provider specified in a single element (aesgcm, identity)",
        ),
    ];
    for (error, expected) in cases {
        assert!(
            error.starts_with(expected),
            "{error:?} should start with {expected:?}"
        );
    }
    let wrong_kind = Encryption::parse("apiVersion: v1\nkind: ConfigMap\n", STORED).unwrap_err();
    assert!(
        wrong_kind.contains("apiserver.config.k8s.io/v1/EncryptionConfiguration"),
        "{wrong_kind}"
    );
}

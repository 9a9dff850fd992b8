//! kube-apiserver's ServiceAccount admission plugin on pod creation: the
//! pod runs as a ServiceAccount that must exist (`default` unless named),
//! and unless automounting is off (on the pod, else on the account) every
//! container mounts a projected `kube-api-access-*` volume with a bound
//! token, the cluster CA and the namespace.

use serde_json::{Value, json};

/// The account a pod that names none runs as.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Where containers find the token, `ca.crt` and `namespace`.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The prefix of the projected volume's name.
const VOLUME_PREFIX: &str = "kube-api-access-";
/// kube's token lifetime for this volume (an hour plus seven seconds, which
/// marks it as the admission plugin's).
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// The ConfigMap the root-ca-cert-publisher keeps in every namespace, and
/// its key.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
pub const ROOT_CA_KEY: &str = "ca.crt";

/// The account `pod` runs as, also filled into `spec.serviceAccountName`
/// and its deprecated alias `spec.serviceAccount`.
pub fn default_account(pod: &mut Value) -> String {
    let spec = &pod["spec"];
    let name = [&spec["serviceAccountName"], &spec["serviceAccount"]]
        .into_iter()
        .filter_map(Value::as_str)
        .find(|name| !name.is_empty())
        .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
        .to_owned();
    pod["spec"]["serviceAccountName"] = json!(name);
    pod["spec"]["serviceAccount"] = json!(name);
    name
}

/// Whether the token is mounted: the pod's choice, else the account's,
/// else yes.
pub fn automounts(pod: &Value, account: &Value) -> bool {
    pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| account["automountServiceAccountToken"].as_bool())
        .unwrap_or(true)
}

/// Mounts the token volume in every init and app container without a
/// mount at [`MOUNT_PATH`], adding the volume if any container mounts it.
/// `suffix` makes its name (kube's random five characters).
pub fn mount_token(pod: &mut Value, mut suffix: impl FnMut() -> String) {
    let taken: Vec<String> = items(&pod["spec"]["volumes"])
        .iter()
        .filter_map(|volume| volume["name"].as_str().map(str::to_owned))
        .collect();
    let name = std::iter::repeat_with(|| format!("{VOLUME_PREFIX}{}", suffix()))
        .find(|name| !taken.contains(name))
        .expect("an endless supply of names");
    let mount = json!({ "name": name, "readOnly": true, "mountPath": MOUNT_PATH });
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = pod["spec"][list].as_array_mut() else {
            continue;
        };
        for container in containers {
            let has_mount = items(&container["volumeMounts"])
                .iter()
                .any(|existing| existing["mountPath"] == MOUNT_PATH);
            if has_mount {
                continue;
            }
            match container["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount.clone()),
                None => container["volumeMounts"] = json!([mount]),
            }
            mounted = true;
        }
    }
    if !mounted {
        return;
    }
    let volume = json!({
        "name": name,
        "projected": {
            "sources": [
                { "serviceAccountToken": { "expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token" } },
                { "configMap": { "name": ROOT_CA_CONFIG_MAP, "items": [{ "key": ROOT_CA_KEY, "path": ROOT_CA_KEY }] } },
                { "downwardAPI": { "items": [{
                    "path": "namespace",
                    "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" },
                }] } },
            ],
            "defaultMode": 0o644,
        },
    });
    match pod["spec"]["volumes"].as_array_mut() {
        Some(volumes) => volumes.push(volume),
        None => pod["spec"]["volumes"] = json!([volume]),
    }
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({ "spec": {
            "initContainers": [{ "name": "init" }],
            "containers": [
                { "name": "app", "volumeMounts": [{ "name": "data", "mountPath": "/data" }] },
                { "name": "own", "volumeMounts": [{ "name": "mine", "mountPath": MOUNT_PATH }] },
            ],
            "volumes": [{ "name": "kube-api-access-aaaaa" }],
        } })
    }

    #[test]
    fn names_the_default_account() {
        let mut unnamed = json!({ "spec": {} });
        assert_eq!(default_account(&mut unnamed), "default");
        assert_eq!(unnamed["spec"]["serviceAccount"], "default");
        let mut legacy = json!({ "spec": { "serviceAccount": "builder" } });
        assert_eq!(default_account(&mut legacy), "builder");
        assert_eq!(legacy["spec"]["serviceAccountName"], "builder");
    }

    #[test]
    fn automount_is_the_pods_then_the_accounts_choice() {
        let on = json!({ "automountServiceAccountToken": true });
        let off = json!({ "automountServiceAccountToken": false });
        let unset = json!({});
        assert!(automounts(&json!({ "spec": {} }), &unset));
        assert!(!automounts(&json!({ "spec": {} }), &off));
        assert!(automounts(&json!({ "spec": on }), &off));
        assert!(!automounts(&json!({ "spec": off }), &on));
    }

    #[test]
    fn mounts_a_projected_volume_where_no_mount_is() {
        let mut pod = pod();
        let mut suffixes = ["aaaaa", "bbbbb"].into_iter();
        mount_token(&mut pod, || suffixes.next().unwrap().to_owned());
        let spec = &pod["spec"];
        let volume = &spec["volumes"][1];
        assert_eq!(volume["name"], "kube-api-access-bbbbb", "a free name");
        let sources = &volume["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        assert_eq!(volume["projected"]["defaultMode"], 420);
        let expected =
            json!({ "name": "kube-api-access-bbbbb", "readOnly": true, "mountPath": MOUNT_PATH });
        assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([expected]));
        assert_eq!(spec["containers"][0]["volumeMounts"][1], expected);
        assert_eq!(
            spec["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn no_volume_when_every_container_mounts_the_path() {
        let mut pod = json!({ "spec": { "containers": [
            { "name": "own", "volumeMounts": [{ "name": "mine", "mountPath": MOUNT_PATH }] },
        ] } });
        mount_token(&mut pod, || "ccccc".to_owned());
        assert!(pod["spec"]["volumes"].is_null());
    }
}

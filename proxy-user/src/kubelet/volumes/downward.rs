//! The downward API's values as files: the pod's name, namespace, uid,
//! labels and annotations (`key="value"` lines, sorted, as the kubelet
//! formats a map), and a container's CPU and memory requests and limits
//! in units of the divisor, rounded up. An unset limit is the node's
//! capacity, an unset request the limit (or 0), as the kubelet reports.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ResourceFieldSelector};

use super::error::VolumeError;
use crate::kubelet::pods::cgroup::{cpu_millis, memory_bytes};

/// The value of a `fieldRef` path.
pub fn field(pod: &Pod, volume: &str, path: &str) -> Result<String, VolumeError> {
    let meta = &pod.metadata;
    let value = match path {
        "metadata.labels" => Some(format_map(meta.labels.as_ref())),
        "metadata.annotations" => Some(format_map(meta.annotations.as_ref())),
        _ => metadata(pod, path),
    };
    value.ok_or_else(|| VolumeError::Unsupported {
        volume: volume.to_owned(),
        why: format!("the downward API has no field {path} for volumes"),
    })
}

/// A `metadata.` field path's value (`name`, `namespace`, `uid`, one
/// label or annotation as `labels['key']`), as volumes and env read it.
pub fn metadata(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let in_map = |map: &Option<BTreeMap<String, String>>, prefix: &str| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.as_ref()?.get(key).cloned().unwrap_or_default())
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        _ => in_map(&meta.labels, "metadata.labels['")
            .or_else(|| in_map(&meta.annotations, "metadata.annotations['")),
    }
}

/// `key="value"` lines in key order, without a last newline.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={}", serde_json::Value::from(value.as_str())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of a `resourceFieldRef`.
pub fn resource(
    pod: &Pod,
    volume: &str,
    selector: &ResourceFieldSelector,
) -> Result<String, VolumeError> {
    let unsupported = |why: String| VolumeError::Unsupported {
        volume: volume.to_owned(),
        why,
    };
    let wanted = selector.container_name.as_deref().unwrap_or_default();
    let container = (pod.spec.iter())
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .find(|c| c.name == wanted)
        .ok_or_else(|| unsupported(format!("resourceFieldRef names no container {wanted:?}")))?;
    let resources = container.resources.as_ref();
    let quantity = |side: &str, name: &str| {
        let map = match side {
            "limits" => resources.and_then(|r| r.limits.as_ref()),
            _ => resources.and_then(|r| r.requests.as_ref()),
        };
        map.and_then(|m| m.get(name)).map(|q| q.0.clone())
    };
    let divisor = selector.divisor.as_ref().map(|q| q.0.as_str());
    let (side, name) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| unsupported(format!("unknown resource {}", selector.resource)))?;
    let set = match side {
        "limits" => quantity("limits", name),
        "requests" => quantity("requests", name).or_else(|| quantity("limits", name)),
        _ => None,
    };
    let value = match (side, name) {
        ("limits" | "requests", "cpu") => {
            let millis = match set {
                Some(q) => cpu_millis(&q),
                None if side == "limits" => Some(node_cpu_millis()),
                None => Some(0),
            };
            let per = divisor.map_or(Some(1000), cpu_millis).filter(|d| *d > 0);
            millis.zip(per).map(|(v, d)| v.div_ceil(d))
        }
        ("limits" | "requests", "memory" | "ephemeral-storage") => {
            let bytes = match set {
                Some(q) => memory_bytes(&q),
                None if side == "limits" && name == "memory" => Some(node_memory_bytes()),
                None => Some(0),
            };
            let per = divisor.map_or(Some(1), memory_bytes).filter(|d| *d > 0);
            bytes.zip(per).map(|(v, d)| v.div_ceil(d))
        }
        _ => {
            return Err(unsupported(format!(
                "unknown resource {}",
                selector.resource
            )));
        }
    };
    value
        .map(|v| v.to_string())
        .ok_or_else(|| unsupported(format!("unreadable quantity for {}", selector.resource)))
}

fn node_cpu_millis() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64) * 1000
}

fn node_memory_bytes() -> u64 {
    // SAFETY: sysconf only reads system constants.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages.max(0) as u64) * (size.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web", "namespace": "shop", "uid": "u-1",
                "labels": { "tier": "front", "app": "web" },
                "annotations": { "note": "say \"hi\"" }
            },
            "spec": { "containers": [{
                "name": "app",
                "resources": { "limits": { "cpu": "500m", "memory": "64Mi" } }
            }] }
        }))
        .unwrap()
    }

    #[test]
    fn fields_read_like_the_kubelet_writes_them() {
        let pod = pod();
        assert_eq!(field(&pod, "v", "metadata.name").unwrap(), "web");
        assert_eq!(field(&pod, "v", "metadata.uid").unwrap(), "u-1");
        assert_eq!(
            field(&pod, "v", "metadata.labels").unwrap(),
            "app=\"web\"\ntier=\"front\""
        );
        assert_eq!(
            field(&pod, "v", "metadata.annotations").unwrap(),
            r#"note="say \"hi\"""#
        );
        assert_eq!(
            field(&pod, "v", "metadata.labels['tier']").unwrap(),
            "front"
        );
        assert!(field(&pod, "v", "spec.nodeName").is_err());
    }

    #[test]
    fn resources_are_in_divisor_units_rounded_up() {
        let pod = pod();
        let get = |what: &str, divisor: Option<&str>| {
            let selector = ResourceFieldSelector {
                container_name: Some("app".into()),
                resource: what.into(),
                divisor: divisor
                    .map(|d| k8s_openapi::apimachinery::pkg::api::resource::Quantity(d.into())),
            };
            resource(&pod, "v", &selector)
        };
        assert_eq!(get("limits.cpu", None).unwrap(), "1");
        assert_eq!(get("limits.cpu", Some("1m")).unwrap(), "500");
        assert_eq!(get("limits.memory", Some("1Mi")).unwrap(), "64");
        assert_eq!(
            get("requests.memory", None).unwrap(),
            (64u64 << 20).to_string()
        );
        assert_eq!(get("requests.ephemeral-storage", None).unwrap(), "0");
        assert!(get("limits.gpu", None).is_err());
    }
}

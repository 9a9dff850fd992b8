//! The names the agent builds paths, cgroups and container ids from,
//! checked again on the node (the API server checks them too, but etcd
//! may hold anything): a namespace, container and volume name is a
//! DNS-1123 label, a pod name a DNS-1123 subdomain. None can then hold
//! `/`, `..` or `_`.
use k8s_openapi::api::core::v1::Pod;

const LABEL_MAX: usize = 63;
const SUBDOMAIN_MAX: usize = 253;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what} {name:?} is not a valid DNS-1123 {kind}: {rule}")]
pub struct NameError {
    what: String,
    name: String,
    kind: &'static str,
    rule: &'static str,
}

/// Every name of the pod the node uses, or the first bad one.
pub fn check(namespace: &str, pod: &Pod) -> Result<(), NameError> {
    label("namespace", namespace)?;
    subdomain("pod name", pod.metadata.name.as_deref().unwrap_or(""))?;
    let Some(spec) = &pod.spec else {
        return Ok(());
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for container in containers {
        label("container name", &container.name)?;
    }
    for volume in spec.volumes.iter().flatten() {
        label("volume name", &volume.name)?;
    }
    Ok(())
}

/// The names a request to the agent's server carries in its path
/// (`/containerLogs/<namespace>/<pod>/<container>` and the like): the same
/// rules, so that none can reach outside the pod's directories.
pub fn check_request(namespace: &str, pod: &str, container: Option<&str>) -> Result<(), NameError> {
    label("namespace", namespace)?;
    subdomain("pod name", pod)?;
    container.map_or(Ok(()), |container| label("container name", container))
}

fn label(what: &str, name: &str) -> Result<(), NameError> {
    let error = |rule| NameError {
        what: what.to_owned(),
        name: name.to_owned(),
        kind: "label",
        rule,
    };
    if name.is_empty() || name.len() > LABEL_MAX {
        return Err(error("1 to 63 characters"));
    }
    label_rule(name).map_err(error)
}

fn subdomain(what: &str, name: &str) -> Result<(), NameError> {
    let error = |rule| NameError {
        what: what.to_owned(),
        name: name.to_owned(),
        kind: "subdomain",
        rule,
    };
    if name.is_empty() || name.len() > SUBDOMAIN_MAX {
        return Err(error("1 to 253 characters"));
    }
    name.split('.').try_for_each(label_rule).map_err(error)
}

fn label_rule(part: &str) -> Result<(), &'static str> {
    let bytes = part.as_bytes();
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let valid = !bytes.is_empty()
        && bytes.iter().all(|b| alphanumeric(b) || *b == b'-')
        && bytes.first().is_some_and(alphanumeric)
        && bytes.last().is_some_and(alphanumeric);
    match valid {
        true => Ok(()),
        false => {
            Err("lower-case letters, digits and '-', starting and ending with a letter or digit")
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};

    use super::*;

    fn pod(name: &str, container: &str, volume: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.to_owned());
        pod.spec = Some(PodSpec {
            containers: vec![Container {
                name: container.to_owned(),
                ..Container::default()
            }],
            volumes: Some(vec![Volume {
                name: volume.to_owned(),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        });
        pod
    }

    #[test]
    fn names_that_could_leave_a_directory_are_refused() {
        assert_eq!(check("default", &pod("web-1.a", "app", "data")), Ok(()));
        for (namespace, bad) in [
            ("default", pod("../etc", "app", "data")),
            ("default", pod("web", "a/b", "data")),
            ("default", pod("web", "app", "..")),
            ("default", pod("web", "my_app", "data")),
            ("default", pod("Web", "app", "data")),
            ("a.b", pod("web", "app", "data")),
            ("default", pod("web", &"a".repeat(64), "data")),
        ] {
            assert!(check(namespace, &bad).is_err(), "{namespace} {bad:?}");
        }
        for (namespace, pod, container) in [
            ("..", "web", Some("app")),
            ("default", "..", Some("app")),
            ("default", "web", Some("..")),
            ("default", "web", Some("")),
            ("default", "%2e%2e", None),
            ("", "web", None),
            ("default", &*"a".repeat(254), None),
        ] {
            assert!(
                check_request(namespace, pod, container).is_err(),
                "{namespace} {pod} {container:?}"
            );
        }
        assert_eq!(check_request("default", "web-1.a", Some("app")), Ok(()));
        let error = check("default", &pod("web", "a/b", "data")).unwrap_err();
        assert!(
            error.to_string().starts_with("container name \"a/b\""),
            "{error}"
        );
    }
}

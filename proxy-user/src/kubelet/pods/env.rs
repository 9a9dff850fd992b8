//! A container's environment, built as the kubelet builds it: Service
//! variables of the pod's namespace and of the API server's `kubernetes`
//! Service first (`<NAME>_SERVICE_HOST`, `_PORT` and the Docker-link style
//! `<NAME>_PORT_...`), then `envFrom`, then `env`
//! (later wins), with `$(VAR)` references expanded against what came
//! before. ConfigMaps and Secrets are read through the API server, Services
//! from etcd, when the container starts, as the kubelet reads them then.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use serde_json::Value;

use crate::kubelet::{
    missing::MissingObject,
    objects::{Kind, Objects},
    store::{Store, StoreError},
    volumes::downward,
};
use skiff_etcd::keys::{SERVICES, collection_prefix, object_key};

/// Why a container cannot start yet: reported as waiting with reason
/// `CreateContainerConfigError`, and retried.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(transparent)]
    Missing(#[from] MissingObject),
    #[error("unsupported field reference {0}")]
    Field(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading through the API server: {0}")]
    Api(#[from] kube::Error),
}

/// What a container's env may refer to beyond the pod object.
pub struct PodFacts<'a> {
    pub pod: &'a Pod,
    pub pod_ip: String,
    /// Every address of the pod, IPv4 first, comma-separated (what
    /// `status.podIPs` gives an env var).
    pub pod_ips: String,
    pub host_ip: String,
}

/// The environment: a default PATH, the image's `Env`, then what the pod
/// sets.
pub async fn build(
    store: &Store,
    objects: &impl Objects,
    facts: &PodFacts<'_>,
    container: &Container,
    image_env: &[(String, String)],
) -> Result<Vec<(String, String)>, EnvError> {
    let pod = facts.pod;
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    };
    set(
        &mut env,
        "PATH".into(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    );
    for (name, value) in image_env {
        set(&mut env, name.clone(), value.clone());
    }
    set(
        &mut env,
        "HOSTNAME".into(),
        pod.metadata.name.clone().unwrap_or_default(),
    );
    let links = spec.and_then(|s| s.enable_service_links) != Some(false);
    let mut services = if links {
        store
            .list(&collection_prefix(SERVICES, Some(&namespace)))
            .await?
    } else {
        Vec::new()
    };
    if namespace != MASTER_SERVICE_NAMESPACE || !links {
        // The Service's key as a prefix: it and any Service whose name
        // starts with it.
        let master = object_key(SERVICES, Some(MASTER_SERVICE_NAMESPACE), MASTER_SERVICE);
        let listed = store.list(&master).await?;
        if let Some(found) = (listed.into_iter()).find(|s| s["metadata"]["name"] == MASTER_SERVICE)
        {
            services = with_master_service(services, found);
        }
    }
    for (name, value) in service_vars(&services) {
        set(&mut env, name, value);
    }
    let mut sources = Cache::default();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let references = [
            (source.config_map_ref.as_ref()).map(|r| ("configmap", &r.name, r.optional)),
            (source.secret_ref.as_ref()).map(|r| ("secret", &r.name, r.optional)),
        ];
        for (kind, name, optional) in references.into_iter().flatten() {
            let data = sources
                .get(objects, kind, &namespace, name, optional)
                .await?;
            for (key, value) in data.into_iter().flatten() {
                set(&mut env, format!("{prefix}{key}"), value);
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => Some(expand(value, &env)),
            (None, Some(from)) => {
                let key_ref = (from.config_map_key_ref.as_ref())
                    .map(|r| ("configmap", &r.name, &r.key, r.optional))
                    .or_else(|| {
                        (from.secret_key_ref.as_ref())
                            .map(|r| ("secret", &r.name, &r.key, r.optional))
                    });
                if let Some((kind, name, key, optional)) = key_ref {
                    let data = sources
                        .get(objects, kind, &namespace, name, optional)
                        .await?;
                    lookup(data, kind, &namespace, name, key, optional)?
                } else if let Some(field) = &from.field_ref {
                    Some(field_value(facts, &field.field_path)?)
                } else if let Some(resource) = &from.resource_field_ref {
                    Some(resource_value(container, &resource.resource)?)
                } else {
                    None
                }
            }
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            set(&mut env, var.name.clone(), value);
        }
    }
    Ok(env)
}

/// The command line as Kubernetes combines it with the image's: `command`
/// replaces the `Entrypoint` (and drops the image's `Cmd`), `args`
/// replaces the `Cmd`. `$(VAR)` is expanded in what the pod gives.
pub fn argv(
    container: &Container,
    env: &[(String, String)],
    entrypoint: &[String],
    cmd: &[String],
) -> Vec<String> {
    let expanded = |args: &Option<Vec<String>>| -> Option<Vec<String>> {
        let args = args.as_ref().filter(|a| !a.is_empty())?;
        Some(args.iter().map(|arg| expand(arg, env)).collect())
    };
    match (expanded(&container.command), expanded(&container.args)) {
        (Some(command), args) => command
            .into_iter()
            .chain(args.into_iter().flatten())
            .collect(),
        (None, Some(args)) => entrypoint.iter().cloned().chain(args).collect(),
        (None, None) => entrypoint.iter().chain(cmd).cloned().collect(),
    }
}

/// One read per object per container start; `None` for an optional one
/// that is missing.
#[derive(Default)]
struct Cache {
    objects: BTreeMap<(&'static str, String), Option<BTreeMap<String, String>>>,
}

impl Cache {
    async fn get(
        &mut self,
        objects: &impl Objects,
        kind: &'static str,
        namespace: &str,
        name: &str,
        optional: Option<bool>,
    ) -> Result<Option<BTreeMap<String, String>>, EnvError> {
        let id = (kind, name.to_owned());
        if !self.objects.contains_key(&id) {
            let api_kind = match kind {
                "secret" => Kind::Secret,
                _ => Kind::ConfigMap,
            };
            let stored = objects.get(api_kind, namespace, name).await?;
            let data = stored.and_then(|object| data_of(kind, object));
            self.objects.insert(id.clone(), data);
        }
        match self.objects[&id].clone() {
            Some(data) => Ok(Some(data)),
            None if optional == Some(true) => Ok(None),
            None => Err(MissingObject::object(kind, namespace, name).into()),
        }
    }
}

fn data_of(kind: &str, object: Value) -> Option<BTreeMap<String, String>> {
    if kind == "secret" {
        let secret: Secret = serde_json::from_value(object).ok()?;
        let mut data: BTreeMap<String, String> = secret.string_data.unwrap_or_default();
        for (key, bytes) in secret.data.unwrap_or_default() {
            data.insert(key, String::from_utf8_lossy(&bytes.0).into_owned());
        }
        Some(data)
    } else {
        let configmap: ConfigMap = serde_json::from_value(object).ok()?;
        Some(configmap.data.unwrap_or_default())
    }
}

fn lookup(
    data: Option<BTreeMap<String, String>>,
    kind: &'static str,
    namespace: &str,
    name: &str,
    key: &str,
    optional: Option<bool>,
) -> Result<Option<String>, EnvError> {
    let Some(data) = data else { return Ok(None) };
    match data.get(key) {
        Some(value) => Ok(Some(value.clone())),
        None if optional == Some(true) => Ok(None),
        None => Err(MissingObject::key(kind, namespace, name, key).into()),
    }
}

fn field_value(facts: &PodFacts<'_>, path: &str) -> Result<String, EnvError> {
    let spec = facts.pod.spec.as_ref();
    let value = match path {
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" => Some(facts.pod_ip.clone()),
        "status.podIPs" => Some(facts.pod_ips.clone()),
        "status.hostIP" | "status.hostIPs" => Some(facts.host_ip.clone()),
        _ => downward::metadata(facts.pod, path),
    };
    match path {
        "metadata.uid" | "spec.serviceAccountName" => Ok(value.unwrap_or_default()),
        _ => value.ok_or_else(|| EnvError::Field(path.to_owned())),
    }
}

fn resource_value(container: &Container, resource: &str) -> Result<String, EnvError> {
    let resources = container.resources.as_ref();
    let (map, name) = match resource.split_once('.') {
        Some(("limits", name)) => (resources.and_then(|r| r.limits.as_ref()), name),
        Some(("requests", name)) => (resources.and_then(|r| r.requests.as_ref()), name),
        _ => return Err(EnvError::Field(resource.to_owned())),
    };
    Ok(map
        .and_then(|m| m.get(name))
        .map(|q| q.0.clone())
        .unwrap_or_default())
}

/// `default/kubernetes`, the API server's Service: every pod gets its
/// variables (`KUBERNETES_SERVICE_HOST`, ...), with or without
/// `enableServiceLinks`, as in-cluster clients find the API by them.
const MASTER_SERVICE_NAMESPACE: &str = "default";
const MASTER_SERVICE: &str = "kubernetes";

/// The pod's namespace's Services and the API server's, which gives way
/// to a Service of the pod's namespace of the same name (as the kubelet's).
fn with_master_service(mut services: Vec<Value>, master: Value) -> Vec<Value> {
    let named_kubernetes = |service: &Value| service["metadata"]["name"] == MASTER_SERVICE;
    if !services.iter().any(named_kubernetes) {
        services.insert(0, master);
    }
    services
}

/// The Service variables of `services` (the pod's namespace), as the
/// kubelet writes them for each Service with a ClusterIP.
pub fn service_vars(services: &[Value]) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for value in services {
        let Ok(service) = serde_json::from_value::<Service>(value.clone()) else {
            continue;
        };
        let Some(spec) = service.spec else { continue };
        let Some(ip) = spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None") else {
            continue;
        };
        let name = service
            .metadata
            .name
            .unwrap_or_default()
            .to_uppercase()
            .replace('-', "_");
        let ports = spec.ports.unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        vars.push((format!("{name}_SERVICE_HOST"), ip.clone()));
        vars.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        for port in &ports {
            if let Some(port_name) = &port.name {
                let port_name = port_name.to_uppercase().replace('-', "_");
                vars.push((
                    format!("{name}_SERVICE_PORT_{port_name}"),
                    port.port.to_string(),
                ));
            }
        }
        let proto = |p: &Option<String>| p.clone().unwrap_or_else(|| "TCP".into());
        vars.push((
            format!("{name}_PORT"),
            format!(
                "{}://{ip}:{}",
                proto(&first.protocol).to_lowercase(),
                first.port
            ),
        ));
        for port in &ports {
            let protocol = proto(&port.protocol);
            let var = format!("{name}_PORT_{}_{protocol}", port.port);
            vars.push((
                var.clone(),
                format!("{}://{ip}:{}", protocol.to_lowercase(), port.port),
            ));
            vars.push((format!("{var}_PROTO"), protocol.to_lowercase()));
            vars.push((format!("{var}_PORT"), port.port.to_string()));
            vars.push((format!("{var}_ADDR"), ip.clone()));
        }
    }
    vars
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an
/// undefined reference kept as written, `$$` is a literal `$`.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match env.iter().rev().find(|(n, _)| n == name) {
                Some((_, value)) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn command_and_args_combine_with_the_image_as_kubernetes_does() {
        let strings = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (entrypoint, cmd) = (strings(&["redis-server"]), strings(&["--port", "6379"]));
        let env = vec![("PORT".to_owned(), "7000".to_owned())];
        let container = |command: Option<&[&str]>, args: Option<&[&str]>| Container {
            command: command.map(strings),
            args: args.map(strings),
            ..Container::default()
        };
        let argv = |c: &Container| argv(c, &env, &entrypoint, &cmd);
        assert_eq!(
            argv(&container(None, None)),
            ["redis-server", "--port", "6379"]
        );
        assert_eq!(
            argv(&container(None, Some(&["--port", "$(PORT)"]))),
            ["redis-server", "--port", "7000"]
        );
        assert_eq!(argv(&container(Some(&["sh"]), None)), ["sh"]);
        assert_eq!(
            argv(&container(Some(&["sh"]), Some(&["-c", "true"]))),
            ["sh", "-c", "true"]
        );
    }

    #[test]
    fn references_expand_like_kubernetes() {
        let env = vec![("A".to_owned(), "1".to_owned())];
        assert_eq!(expand("x$(A)y", &env), "x1y");
        assert_eq!(expand("$(B)", &env), "$(B)");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("cost $5", &env), "cost $5");
    }

    #[test]
    fn services_become_variables() {
        let services = [
            json!({
                "metadata": { "name": "my-web", "namespace": "default" },
                "spec": { "clusterIP": "10.96.0.10", "ports": [
                    { "name": "http", "port": 80, "protocol": "TCP" },
                    { "name": "dns", "port": 53, "protocol": "UDP" }
                ] }
            }),
            json!({
                "metadata": { "name": "headless" },
                "spec": { "clusterIP": "None", "ports": [{ "port": 80 }] }
            }),
        ];
        let vars: BTreeMap<String, String> = service_vars(&services).into_iter().collect();
        assert_eq!(vars["MY_WEB_SERVICE_HOST"], "10.96.0.10");
        assert_eq!(vars["MY_WEB_SERVICE_PORT"], "80");
        assert_eq!(vars["MY_WEB_SERVICE_PORT_DNS"], "53");
        assert_eq!(vars["MY_WEB_PORT"], "tcp://10.96.0.10:80");
        assert_eq!(vars["MY_WEB_PORT_53_UDP_ADDR"], "10.96.0.10");
        assert!(!vars.contains_key("HEADLESS_SERVICE_HOST"));
    }

    #[test]
    fn the_api_servers_service_gives_way_to_the_namespaces_own() {
        let master = json!({
            "metadata": { "name": "kubernetes", "namespace": "default" },
            "spec": { "clusterIP": "10.96.0.1", "ports": [{ "name": "https", "port": 443 }] }
        });
        let vars = |services: Vec<Value>| -> BTreeMap<String, String> {
            service_vars(&with_master_service(services, master.clone()))
                .into_iter()
                .collect()
        };
        let alone = vars(Vec::new());
        assert_eq!(alone["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
        assert_eq!(alone["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(alone["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(alone["KUBERNETES_PORT"], "tcp://10.96.0.1:443");
        assert_eq!(alone["KUBERNETES_PORT_443_TCP_ADDR"], "10.96.0.1");
        let own = json!({
            "metadata": { "name": "kubernetes", "namespace": "shop" },
            "spec": { "clusterIP": "10.96.0.77", "ports": [{ "port": 8443 }] }
        });
        let shadowed = vars(vec![own]);
        assert_eq!(shadowed["KUBERNETES_SERVICE_HOST"], "10.96.0.77");
        assert_eq!(shadowed["KUBERNETES_SERVICE_PORT"], "8443");
    }
}

//! Where objects live in etcd: Kubernetes' own layout, so that tools which
//! read etcd directly (the agent, etcdctl, the tests) find them where the
//! API server put them.
//!
//! A kind's base has no trailing `/`: an object is `<base>/<namespace>/<name>`
//! (namespaced kinds) or `<base>/<name>` (cluster-scoped ones).

use std::time::Duration;

pub const NAMESPACES: &str = "/registry/namespaces";
/// Nodes keep their historical name in etcd.
pub const NODES: &str = "/registry/minions";
pub const PODS: &str = "/registry/pods";
pub const SERVICES: &str = "/registry/services/specs";
/// Legacy Endpoints share the Services' root, next to `specs`.
pub const ENDPOINTS: &str = "/registry/services/endpoints";
pub const ENDPOINT_SLICES: &str = "/registry/endpointslices";
pub const CONFIG_MAPS: &str = "/registry/configmaps";
pub const SECRETS: &str = "/registry/secrets";
pub const SERVICE_ACCOUNTS: &str = "/registry/serviceaccounts";
pub const EVENTS: &str = "/registry/events";
/// `events.k8s.io` Events are stored apart from core Events.
pub const EVENTS_K8S_IO: &str = "/registry/events.k8s.io/events";
pub const DEPLOYMENTS: &str = "/registry/deployments";
pub const REPLICA_SETS: &str = "/registry/replicasets";
/// ReplicationControllers keep their historical name in etcd.
pub const REPLICATION_CONTROLLERS: &str = "/registry/controllers";
pub const DAEMON_SETS: &str = "/registry/daemonsets";
pub const STATEFUL_SETS: &str = "/registry/statefulsets";
pub const JOBS: &str = "/registry/jobs";
pub const CRON_JOBS: &str = "/registry/cronjobs";
pub const CONTROLLER_REVISIONS: &str = "/registry/controllerrevisions";
/// Singular, as Kubernetes stores Ingresses.
pub const INGRESSES: &str = "/registry/ingress";
pub const INGRESS_CLASSES: &str = "/registry/ingressclasses";
pub const LEASES: &str = "/registry/leases";
pub const PERSISTENT_VOLUMES: &str = "/registry/persistentvolumes";
pub const PERSISTENT_VOLUME_CLAIMS: &str = "/registry/persistentvolumeclaims";
pub const STORAGE_CLASSES: &str = "/registry/storageclasses";
pub const RESOURCE_QUOTAS: &str = "/registry/resourcequotas";
pub const LIMIT_RANGES: &str = "/registry/limitranges";
pub const ROLES: &str = "/registry/roles";
pub const CLUSTER_ROLES: &str = "/registry/clusterroles";
pub const ROLE_BINDINGS: &str = "/registry/rolebindings";
pub const CLUSTER_ROLE_BINDINGS: &str = "/registry/clusterrolebindings";
pub const CERTIFICATE_SIGNING_REQUESTS: &str = "/registry/certificatesigningrequests";

/// skiff's own records next to the objects: one key per allocated
/// ClusterIP, NodePort or LoadBalancer IP, `<base>/<pool>/<value>`.
pub const ALLOCATIONS: &str = "/registry/skiff/allocations";
/// One key per Node's pod CIDR, `<base>/<network>-<prefix length>`.
pub const POD_CIDRS: &str = "/registry/skiff/podcidrs";
/// Where the API servers agree on whose turn it is to compact: its version
/// counts compactions, its value is the revision compacted to. The key
/// kube-apiserver uses, so that both coordinate on one etcd.
pub const COMPACT_REV: &str = "compact_rev_key";
/// Leader election's fence: rewritten by each new leader as it takes the
/// lease, compared by every write of its controllers,
/// `<base>/<namespace>/<lease name>`.
pub const LEADER_FENCES: &str = "/registry/skiff/leaderfences";
/// A key nothing writes, read to learn etcd's revision.
pub const HEALTH: &str = "/registry/health";

/// The key of one object: `<base>/<namespace>/<name>` for namespaced
/// kinds, `<base>/<name>` for cluster-scoped ones.
pub fn object_key(base: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(namespace) => format!("{base}/{namespace}/{name}"),
        None => format!("{base}/{name}"),
    }
}

/// The prefix every key of a collection starts with: all objects of the
/// kind, or those of one namespace. Ends in `/` so that namespace `a` does
/// not also match namespace `ab`.
pub fn collection_prefix(base: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(namespace) => format!("{base}/{namespace}/"),
        None => format!("{base}/"),
    }
}

/// Namespace and name of a namespaced object's key under `base`; `None`
/// for anything else (another kind, a missing or extra segment, not UTF-8).
pub fn parse_namespaced(base: &str, key: &[u8]) -> Option<(String, String)> {
    let rest = std::str::from_utf8(key)
        .ok()?
        .strip_prefix(base)?
        .strip_prefix('/')?;
    let (namespace, name) = rest.split_once('/')?;
    if namespace.is_empty() || name.is_empty() || name.contains('/') {
        return None;
    }
    Some((namespace.to_owned(), name.to_owned()))
}

/// How long Events live after their last write: kube-apiserver's default
/// `--event-ttl`.
pub const EVENT_TTL: Duration = Duration::from_secs(3600);

/// How long the object at `key` lives after each write, for kinds that
/// expire (Events, of both API groups); `None` for the others. Every write
/// through skiff-etcd's `kv` attaches such keys to a lease of this length.
pub fn time_to_live(key: &str) -> Option<Duration> {
    [EVENTS, EVENTS_K8S_IO]
        .iter()
        .any(|base| key.starts_with(&collection_prefix(base, None)))
        .then_some(EVENT_TTL)
}

/// The first key after every key that starts with `prefix`: the exclusive
/// end of a range read or watch over the prefix.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only a prefix of all 0xff bytes gets here: "to the end of the keyspace".
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_events_expire() {
        assert_eq!(
            time_to_live("/registry/events/default/web.17a2b"),
            Some(EVENT_TTL)
        );
        assert_eq!(
            time_to_live("/registry/events.k8s.io/events/default/web.17a2b"),
            Some(EVENT_TTL)
        );
        assert_eq!(time_to_live("/registry/pods/default/web"), None);
        assert_eq!(time_to_live("/registry/eventsx/default/web"), None);
    }

    #[test]
    fn keys_follow_kubernetes_layout() {
        assert_eq!(
            object_key(SERVICES, Some("default"), "web"),
            "/registry/services/specs/default/web"
        );
        assert_eq!(object_key(NODES, None, "node1"), "/registry/minions/node1");
        assert_eq!(
            object_key(LEASES, Some("kube-node-lease"), "node1"),
            "/registry/leases/kube-node-lease/node1"
        );
        assert_eq!(collection_prefix(PODS, Some("a")), "/registry/pods/a/");
        assert_eq!(collection_prefix(PODS, None), "/registry/pods/");
    }

    #[test]
    fn parses_namespace_and_name_from_keys() {
        let parse = |base, key: &str| parse_namespaced(base, key.as_bytes());
        assert_eq!(
            parse(SERVICES, "/registry/services/specs/default/web"),
            Some(("default".into(), "web".into()))
        );
        assert_eq!(
            parse(
                ENDPOINT_SLICES,
                "/registry/endpointslices/kube-system/dns-x7k2p"
            ),
            Some(("kube-system".into(), "dns-x7k2p".into()))
        );
        for bad in [
            "/registry/services/specs/default",
            "/registry/services/specs/default/",
            "/registry/services/specs//web",
            "/registry/services/specs/default/web/extra",
            "/registry/services/endpoints/default/web",
            "/registry/services/specsx/default/web",
            "",
        ] {
            assert_eq!(parse(SERVICES, bad), None, "{bad}");
        }
        assert_eq!(
            parse_namespaced(SERVICES, b"/registry/services/specs/default/\xff"),
            None
        );
    }

    #[test]
    fn prefix_end_bounds_exactly_the_prefix() {
        let end = prefix_end("/registry/pods/a/");
        assert_eq!(end, b"/registry/pods/a0");
        assert!(b"/registry/pods/a/zzz".as_slice() < end.as_slice());
        assert!(b"/registry/pods/ab/x".as_slice() >= end.as_slice());
        let end = prefix_end("/registry/services/specs/");
        assert_eq!(end, b"/registry/services/specs0");
        assert_eq!(prefix_end("\u{7f}"), b"\x80");
    }
}

//! Where objects live in etcd: Kubernetes' own layout, so tools that read
//! etcd directly (the agent, etcdctl) find them where they expect.

/// The key of one object: `<base>/<namespace>/<name>` for namespaced
/// resources, `<base>/<name>` for cluster-scoped ones. `base` is the
/// resource's root, e.g. `/registry/services/specs`.
pub fn object_key(base: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(namespace) => format!("{base}/{namespace}/{name}"),
        None => format!("{base}/{name}"),
    }
}

/// The prefix every key of a collection starts with: all objects of the
/// resource, or those of one namespace. Ends in `/` so that namespace `a`
/// does not also match namespace `ab`.
pub fn collection_prefix(base: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(namespace) => format!("{base}/{namespace}/"),
        None => format!("{base}/"),
    }
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
    fn keys_follow_kubernetes_layout() {
        assert_eq!(
            object_key("/registry/services/specs", Some("default"), "web"),
            "/registry/services/specs/default/web"
        );
        assert_eq!(
            object_key("/registry/minions", None, "node1"),
            "/registry/minions/node1"
        );
        assert_eq!(
            collection_prefix("/registry/pods", Some("a")),
            "/registry/pods/a/"
        );
        assert_eq!(collection_prefix("/registry/pods", None), "/registry/pods/");
    }

    #[test]
    fn prefix_end_bounds_exactly_the_prefix() {
        let end = prefix_end("/registry/pods/a/");
        assert_eq!(end, b"/registry/pods/a0");
        assert!(b"/registry/pods/a/zzz".as_slice() < end.as_slice());
        assert!(b"/registry/pods/ab/x".as_slice() >= end.as_slice());
    }
}

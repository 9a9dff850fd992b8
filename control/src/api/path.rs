//! Which resource, namespace, object and subresource a URL path names.

use super::metrics;
use super::registry::{self, Resource};
use super::reviews::{self, Review};

/// What an API path points at.
#[derive(Debug, PartialEq)]
pub enum Route {
    Discovery(Document),
    /// `/openapi/v3` (`None`) or a group-version's document below it, e.g.
    /// `api/v1`.
    OpenApi(Option<String>),
    /// A collection, an object or an object's subresource.
    Object(Target),
    /// Resource metrics (`metrics.k8s.io`), read from the node agents.
    Metrics(metrics::Target),
    /// A review (`authorization.k8s.io`, `authentication.k8s.io`),
    /// answered and never stored; local ones in a namespace.
    Review {
        review: Review,
        namespace: Option<String>,
    },
}

/// A discovery document.
#[derive(Debug, PartialEq)]
pub enum Document {
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/api/v1`, `/apis/<group>/<version>`: the resource list.
    Resources { group: String, version: String },
}

#[derive(Debug, PartialEq)]
pub struct Target {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// The route of `path`; `None` when it names nothing served.
pub fn route(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segments.as_slice() {
        ["api"] => Some(Route::Discovery(Document::CoreVersions)),
        ["apis"] => Some(Route::Discovery(Document::Groups)),
        ["openapi", "v3"] => Some(Route::OpenApi(None)),
        ["openapi", "v3", rest @ ..] => Some(Route::OpenApi(Some(rest.join("/")))),
        ["apis", metrics::GROUP, metrics::VERSION] => Some(Route::Discovery(Document::Resources {
            group: metrics::GROUP.to_owned(),
            version: metrics::VERSION.to_owned(),
        })),
        ["apis", metrics::GROUP, metrics::VERSION, rest @ ..] => {
            metrics::route(rest).map(Route::Metrics)
        }
        ["apis", group, reviews::VERSION, rest @ ..] if reviews::GROUPS.contains(group) => {
            review(group, rest)
        }
        ["api", version, rest @ ..] => within("", version, rest),
        ["apis", group, version, rest @ ..] => within(group, version, rest),
        _ => None,
    }
}

fn review(group: &str, rest: &[&str]) -> Option<Route> {
    let (namespace, plural) = match rest {
        [] => {
            return Some(Route::Discovery(Document::Resources {
                group: group.to_owned(),
                version: reviews::VERSION.to_owned(),
            }));
        }
        [plural] => (None, plural),
        ["namespaces", namespace, plural] => (Some((*namespace).to_owned()), plural),
        _ => return None,
    };
    let review = Review::find(group, plural, namespace.is_some())?;
    Some(Route::Review { review, namespace })
}

fn within(group: &str, version: &str, rest: &[&str]) -> Option<Route> {
    if rest.is_empty() {
        let served = registry::groups().contains(&(group, version));
        return served.then(|| {
            Route::Discovery(Document::Resources {
                group: group.to_owned(),
                version: version.to_owned(),
            })
        });
    }
    if rest.iter().any(|segment| segment.is_empty()) {
        return None;
    }
    let find = |plural: &str| registry::find(group, version, plural);
    let target = |resource: &'static Resource,
                  namespace: Option<&str>,
                  name: Option<&&str>,
                  sub: Option<&&str>| {
        Some(Route::Object(Target {
            resource,
            namespace: namespace.map(str::to_owned),
            name: name.map(|n| (*n).to_owned()),
            subresource: sub.map(|s| (*s).to_owned()),
        }))
    };
    // `namespaces/<ns>/<plural>...` is a namespaced resource, unless the
    // third segment is a namespace subresource (`namespaces/<ns>/status`).
    if let ["namespaces", namespace, plural, more @ ..] = rest
        && more.len() <= 2
        && let Some(resource) = find(plural).filter(|r| r.namespaced)
    {
        return target(resource, Some(namespace), more.first(), more.get(1));
    }
    let (plural, more) = rest.split_first()?;
    let resource = find(plural)?;
    if more.len() > 2 {
        return None;
    }
    // A namespaced resource across all namespaces is only a collection.
    if resource.namespaced && !more.is_empty() {
        return None;
    }
    target(resource, None, more.first(), more.get(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(path: &str) -> Target {
        match route(path) {
            Some(Route::Object(target)) => target,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn routes_paths() {
        assert_eq!(
            route("/api"),
            Some(Route::Discovery(Document::CoreVersions))
        );
        assert_eq!(route("/apis/"), Some(Route::Discovery(Document::Groups)));
        assert_eq!(
            route("/apis/apps/v1"),
            Some(Route::Discovery(Document::Resources {
                group: "apps".into(),
                version: "v1".into()
            }))
        );
        assert_eq!(route("/apis/apps/v2"), None);
        assert_eq!(route("/openapi/v3"), Some(Route::OpenApi(None)));
        assert_eq!(
            route("/openapi/v3/apis/apps/v1"),
            Some(Route::OpenApi(Some("apis/apps/v1".into())))
        );

        let all = object("/api/v1/services");
        assert_eq!(
            (all.resource.plural, all.namespace, all.name),
            ("services", None, None)
        );
        let one = object("/api/v1/namespaces/default/services/web/status");
        assert_eq!(one.namespace.as_deref(), Some("default"));
        assert_eq!(one.name.as_deref(), Some("web"));
        assert_eq!(one.subresource.as_deref(), Some("status"));

        let namespace = object("/api/v1/namespaces/default");
        assert_eq!(
            (namespace.resource.plural, namespace.name.as_deref()),
            ("namespaces", Some("default"))
        );
        let namespace_status = object("/api/v1/namespaces/default/status");
        assert_eq!(namespace_status.subresource.as_deref(), Some("status"));

        let node = object("/api/v1/nodes/n1");
        assert_eq!(
            (node.resource.plural, node.name.as_deref()),
            ("nodes", Some("n1"))
        );
        let slices = object("/apis/discovery.k8s.io/v1/namespaces/a/endpointslices");
        assert_eq!(slices.resource.kind, "EndpointSlice");

        assert_eq!(route("/api/v1/services/web"), None);
        assert_eq!(route("/api/v1/namespaces/a/services/web/status/x"), None);
        assert_eq!(route("/api/v1/widgets"), None);
        assert_eq!(route("/healthz"), None);
        assert_eq!(
            route("/apis/authorization.k8s.io/v1/namespaces/a/localsubjectaccessreviews"),
            Some(Route::Review {
                review: Review::LocalSubjectAccess,
                namespace: Some("a".into())
            })
        );
        assert_eq!(
            route("/apis/authentication.k8s.io/v1/selfsubjectreviews"),
            Some(Route::Review {
                review: Review::SelfSubject,
                namespace: None
            })
        );
        assert_eq!(
            route("/apis/authorization.k8s.io/v1/namespaces/a/subjectaccessreviews"),
            None
        );
        assert_eq!(
            route("/apis/metrics.k8s.io/v1beta1/nodes"),
            Some(Route::Metrics(metrics::Target::Nodes { name: None }))
        );
    }
}

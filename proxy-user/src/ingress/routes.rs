//! The route table: which target a request's host and path select, as
//! networking.k8s.io/v1 defines it. A host is matched exactly, then by
//! wildcard (`*.foo.com` matches exactly one label before `foo.com`), then
//! by the rules without a host, as nginx picks a server block; within a
//! host an Exact path beats any Prefix and the longest Prefix wins, a
//! Prefix matching whole path elements (`/foo` matches `/foo/bar`, not
//! `/foobar`). A request no path matches goes to the host's default
//! backend, else to the cluster-wide one. Rules of several Ingresses for
//! one host merge; where two name the same path, the first added keeps it.
use std::collections::HashMap;

use super::objects::PathKind;

#[derive(Debug)]
pub struct RouteTable<T> {
    exact_hosts: HashMap<String, HostRoutes<T>>,
    /// By the suffix after `*.`.
    wildcard_hosts: HashMap<String, HostRoutes<T>>,
    any_host: Option<HostRoutes<T>>,
    default: Option<T>,
}

#[derive(Debug)]
struct HostRoutes<T> {
    exact: HashMap<String, T>,
    /// Normalised prefixes (no trailing `/`, `/` itself as ""), longest
    /// first.
    prefixes: Vec<(String, T)>,
    default: Option<T>,
}

impl<T> Default for HostRoutes<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            prefixes: Vec::new(),
            default: None,
        }
    }
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            exact_hosts: HashMap::new(),
            wildcard_hosts: HashMap::new(),
            any_host: None,
            default: None,
        }
    }
}

impl<T> RouteTable<T> {
    /// Adds a path rule of `host` (`None`: any host). The first target
    /// added for a (host, kind, path) keeps it.
    pub fn add_path(&mut self, host: Option<&str>, kind: PathKind, path: &str, target: T) {
        let routes = self.host_entry(host);
        match kind {
            PathKind::Exact => {
                routes.exact.entry(path.to_owned()).or_insert(target);
            }
            PathKind::Prefix => {
                let prefix = path.trim_end_matches('/');
                if routes.prefixes.iter().all(|(known, _)| known != prefix) {
                    let at = routes
                        .prefixes
                        .partition_point(|(known, _)| known.len() >= prefix.len());
                    routes.prefixes.insert(at, (prefix.to_owned(), target));
                }
            }
        }
    }

    /// The default backend for requests to `host` that match none of its
    /// paths; the first one given keeps it.
    pub fn add_host_default(&mut self, host: Option<&str>, target: T) {
        self.host_entry(host).default.get_or_insert(target);
    }

    /// The backend of requests no rule takes; the first one given keeps it.
    pub fn set_default(&mut self, target: T) {
        self.default.get_or_insert(target);
    }

    fn host_entry(&mut self, host: Option<&str>) -> &mut HostRoutes<T> {
        match host {
            None => self.any_host.get_or_insert_with(HostRoutes::default),
            Some(host) => match host.strip_prefix("*.") {
                Some(suffix) => self
                    .wildcard_hosts
                    .entry(suffix.to_ascii_lowercase())
                    .or_default(),
                None => self
                    .exact_hosts
                    .entry(host.to_ascii_lowercase())
                    .or_default(),
            },
        }
    }

    /// The target for a request to `host` (lower-case, without port) and
    /// `path` (without query).
    pub fn lookup(&self, host: &str, path: &str) -> Option<&T> {
        let routes = self
            .exact_hosts
            .get(host)
            .or_else(|| {
                let (_, suffix) = host.split_once('.')?;
                self.wildcard_hosts.get(suffix)
            })
            .or(self.any_host.as_ref());
        match routes {
            Some(routes) => routes
                .matching(path)
                .or(routes.default.as_ref())
                .or(self.default.as_ref()),
            None => self.default.as_ref(),
        }
    }

    /// How many hosts and paths the table holds, for the log.
    pub fn size(&self) -> (usize, usize) {
        let hosts = self
            .exact_hosts
            .values()
            .chain(self.wildcard_hosts.values());
        let all: Vec<&HostRoutes<T>> = hosts.chain(self.any_host.iter()).collect();
        let paths = all.iter().map(|r| r.exact.len() + r.prefixes.len()).sum();
        (self.exact_hosts.len() + self.wildcard_hosts.len(), paths)
    }
}

impl<T> HostRoutes<T> {
    fn matching(&self, path: &str) -> Option<&T> {
        if let Some(target) = self.exact.get(path) {
            return Some(target);
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| prefix_matches(prefix, path))
            .map(|(_, target)| target)
    }
}

/// Whether the normalised `prefix` matches `path` element by element.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathKind::{Exact, Prefix};

    fn table(rules: &[(Option<&str>, PathKind, &str, &'static str)]) -> RouteTable<&'static str> {
        let mut table = RouteTable::default();
        for (host, kind, path, target) in rules {
            table.add_path(*host, *kind, path, *target);
        }
        table
    }

    #[test]
    fn prefix_matches_whole_elements() {
        let t = table(&[
            (None, Prefix, "/foo/bar", "foobar"),
            (None, Prefix, "/", "root"),
        ]);
        assert_eq!(t.lookup("x", "/foo/bar"), Some(&"foobar"));
        assert_eq!(t.lookup("x", "/foo/bar/"), Some(&"foobar"));
        assert_eq!(t.lookup("x", "/foo/bar/baz"), Some(&"foobar"));
        assert_eq!(t.lookup("x", "/foo/barbaz"), Some(&"root"));
        assert_eq!(t.lookup("x", "/foo"), Some(&"root"));
        // A trailing slash in the rule is ignored.
        let t = table(&[(None, Prefix, "/aaa/bbb/", "b")]);
        assert_eq!(t.lookup("x", "/aaa/bbb"), Some(&"b"));
        assert_eq!(t.lookup("x", "/aaa/bbbxyz"), None);
    }

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let t = table(&[
            (None, Prefix, "/", "root"),
            (None, Prefix, "/foo", "foo"),
            (None, Exact, "/foo", "exact"),
            (None, Prefix, "/foo/bar", "bar"),
        ]);
        assert_eq!(t.lookup("x", "/foo"), Some(&"exact"));
        assert_eq!(t.lookup("x", "/foo/"), Some(&"foo"));
        assert_eq!(t.lookup("x", "/foo/bar/1"), Some(&"bar"));
        assert_eq!(t.lookup("x", "/other"), Some(&"root"));
        // Exact is exact: no trailing slash, no case folding.
        let t = table(&[(None, Exact, "/foo", "exact")]);
        assert_eq!(t.lookup("x", "/foo/"), None);
        assert_eq!(t.lookup("x", "/FOO"), None);
    }

    #[test]
    fn hosts_exact_then_wildcard_then_any() {
        let t = table(&[
            (Some("foo.bar.com"), Prefix, "/", "exact"),
            (Some("*.bar.com"), Prefix, "/", "wildcard"),
            (None, Prefix, "/", "any"),
        ]);
        assert_eq!(t.lookup("foo.bar.com", "/"), Some(&"exact"));
        assert_eq!(t.lookup("baz.bar.com", "/"), Some(&"wildcard"));
        // A wildcard covers exactly one label.
        assert_eq!(t.lookup("bar.com", "/"), Some(&"any"));
        assert_eq!(t.lookup("a.baz.bar.com", "/"), Some(&"any"));
    }

    #[test]
    fn unknown_host_without_defaults_has_no_target() {
        let t = table(&[(Some("foo.com"), Prefix, "/", "foo")]);
        assert_eq!(t.lookup("other.com", "/"), None);
        // A known host whose paths do not match has none either.
        let t = table(&[(Some("foo.com"), Prefix, "/api", "api")]);
        assert_eq!(t.lookup("foo.com", "/web"), None);
    }

    #[test]
    fn default_backends_take_what_no_path_does() {
        let mut t = table(&[
            (Some("foo.com"), Prefix, "/api", "api"),
            (Some("bar.com"), Prefix, "/api", "bar-api"),
        ]);
        t.add_host_default(Some("foo.com"), "foo-default");
        t.set_default("cluster-default");
        t.set_default("later-default");
        assert_eq!(t.lookup("foo.com", "/api/x"), Some(&"api"));
        assert_eq!(t.lookup("foo.com", "/web"), Some(&"foo-default"));
        assert_eq!(t.lookup("bar.com", "/web"), Some(&"cluster-default"));
        assert_eq!(t.lookup("unknown.com", "/"), Some(&"cluster-default"));
    }

    #[test]
    fn merged_rules_keep_the_first_of_a_conflict() {
        let t = table(&[
            (Some("foo.com"), Prefix, "/a", "first"),
            (Some("foo.com"), Prefix, "/a/", "second"),
            (Some("foo.com"), Prefix, "/b", "other-ingress"),
        ]);
        assert_eq!(t.lookup("foo.com", "/a"), Some(&"first"));
        assert_eq!(t.lookup("foo.com", "/b"), Some(&"other-ingress"));
        assert_eq!(t.size(), (1, 2));
    }
}

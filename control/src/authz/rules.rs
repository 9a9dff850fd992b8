//! RBAC's rules: whether one allows a request (kube's `RuleAllows`),
//! whether a set of rules covers another (`validation.Covers`, the
//! escalation check), and how missing rules are printed.

use serde::{Deserialize, Serialize};

use super::attributes::{Action, ResourceAction};

/// Matches every verb, group, resource or path.
pub const ALL: &str = "*";

/// An rbac.authorization.k8s.io/v1 `PolicyRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(
        rename = "nonResourceURLs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|&v| v.to_owned()).collect()
}

impl PolicyRule {
    /// `verbs` on `resources` of `groups`.
    pub fn resources(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Self {
        Self {
            verbs: strings(verbs),
            api_groups: strings(groups),
            resources: strings(resources),
            ..Self::default()
        }
    }

    /// `verbs` on the non-resource `urls`.
    pub fn urls(verbs: &[&str], urls: &[&str]) -> Self {
        Self {
            verbs: strings(verbs),
            non_resource_urls: strings(urls),
            ..Self::default()
        }
    }

    /// Only the objects named `names`.
    pub fn named(mut self, names: &[&str]) -> Self {
        self.resource_names = strings(names);
        self
    }

    /// Whether this rule allows `action`.
    pub fn allows(&self, action: &Action) -> bool {
        match action {
            Action::Resource(info) => {
                self.verb_matches(&info.verb)
                    && self.group_matches(&info.group)
                    && self.resource_matches(info)
                    && self.name_matches(&info.name)
            }
            Action::NonResource { verb, path } => self.verb_matches(verb) && self.url_matches(path),
        }
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == ALL || v == verb)
    }

    fn group_matches(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == ALL || g == group)
    }

    /// `*`, the exact `resource/subresource`, or `*/subresource`.
    fn resource_matches(&self, info: &ResourceAction) -> bool {
        let combined = info.combined_resource();
        self.resources.iter().any(|r| {
            r == ALL
                || *r == combined
                || (!info.subresource.is_empty()
                    && r.strip_prefix("*/") == Some(info.subresource.as_str()))
        })
    }

    fn name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }

    /// `*`, the exact path, or a prefix ending in `*`.
    fn url_matches(&self, path: &str) -> bool {
        self.non_resource_urls
            .iter()
            .any(|url| url_covers(url, path))
    }

    /// The rule as one rule per group, resource, verb and name (or per
    /// path and verb): kube's `BreakdownRule`.
    pub fn breakdown(&self) -> Vec<PolicyRule> {
        let mut rules = Vec::new();
        for group in &self.api_groups {
            for resource in &self.resources {
                for verb in &self.verbs {
                    let one = PolicyRule {
                        verbs: vec![verb.clone()],
                        api_groups: vec![group.clone()],
                        resources: vec![resource.clone()],
                        ..PolicyRule::default()
                    };
                    if self.resource_names.is_empty() {
                        rules.push(one);
                    } else {
                        for name in &self.resource_names {
                            rules.push(PolicyRule {
                                resource_names: vec![name.clone()],
                                ..one.clone()
                            });
                        }
                    }
                }
            }
        }
        for url in &self.non_resource_urls {
            for verb in &self.verbs {
                rules.push(PolicyRule {
                    verbs: vec![verb.clone()],
                    non_resource_urls: vec![url.clone()],
                    ..PolicyRule::default()
                });
            }
        }
        rules
    }

    /// Whether this (an owner's) rule covers all of `sub`: kube's
    /// `ruleCovers`.
    fn covers(&self, sub: &PolicyRule) -> bool {
        let has_all = |owner: &[String], wanted: &[String]| {
            owner.iter().any(|o| o == ALL) || wanted.iter().all(|w| owner.contains(w))
        };
        let names = if sub.resource_names.is_empty() {
            self.resource_names.is_empty()
        } else {
            self.resource_names.is_empty() || has_all(&self.resource_names, &sub.resource_names)
        };
        has_all(&self.verbs, &sub.verbs)
            && has_all(&self.api_groups, &sub.api_groups)
            && resources_cover(&self.resources, &sub.resources)
            && sub.non_resource_urls.iter().all(|wanted| {
                self.non_resource_urls
                    .iter()
                    .any(|url| url_covers(url, wanted))
            })
            && names
    }

    /// kube's `CompactString`: `{APIGroups:["apps"], Resources:["pods"],
    /// Verbs:["get"]}`, the empty fields left out.
    pub fn compact_string(&self) -> String {
        let mut parts = Vec::new();
        for (label, values) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !values.is_empty() {
                parts.push(format!("{label}:{}", go_quoted_list(values)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn go_quoted_list(values: &[String]) -> String {
    let quoted: Vec<String> = values
        .iter()
        .map(|v| crate::validation::go_quote(v))
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// Whether the rule path `url` covers `path`.
fn url_covers(url: &str, path: &str) -> bool {
    url == ALL
        || url == path
        || url
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

/// kube's `resourceCoversAll`: `*`, the resource itself, `resource/*` or
/// `*/subresource`.
fn resources_cover(owner: &[String], wanted: &[String]) -> bool {
    if owner.iter().any(|o| o == ALL) {
        return true;
    }
    wanted.iter().all(|resource| {
        owner.contains(resource)
            || resource.split_once('/').is_some_and(|(main, sub)| {
                owner
                    .iter()
                    .any(|o| *o == format!("{main}/*") || *o == format!("*/{sub}"))
            })
    })
}

/// Whether `owner` covers every rule of `wanted`; the broken-down rules it
/// does not cover otherwise (kube's `validation.Covers`).
pub fn uncovered(owner: &[PolicyRule], wanted: &[PolicyRule]) -> Vec<PolicyRule> {
    wanted
        .iter()
        .flat_map(PolicyRule::breakdown)
        .filter(|sub| !owner.iter().any(|rule| rule.covers(sub)))
        .collect()
}

/// Rules that differ only in their verbs merged into one, in first-seen
/// order (kube's `CompactRules`).
pub fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut merged: Vec<PolicyRule> = Vec::new();
    for rule in rules {
        let simple = rule.api_groups.len() == 1
            && rule.resources.len() == 1
            && rule.resource_names.len() <= 1
            && rule.non_resource_urls.is_empty();
        let same = |other: &PolicyRule| {
            other.api_groups == rule.api_groups
                && other.resources == rule.resources
                && other.resource_names == rule.resource_names
                && other.non_resource_urls.is_empty()
        };
        match merged.iter_mut().find(|other| simple && same(other)) {
            Some(other) => {
                for verb in rule.verbs {
                    if !other.verbs.contains(&verb) {
                        other.verbs.push(verb);
                    }
                }
            }
            None => merged.push(rule),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::attributes::{ListOptions, action};

    fn allows(rule: &PolicyRule, method: &str, path: &str) -> bool {
        rule.allows(&action(method, path, ListOptions::default()))
    }

    /// After kube's rbac_test.go `TestRuleMatches`.
    #[test]
    fn rules_match_requests() {
        let pods = "/api/v1/namespaces/ns/pods";
        let cases: &[(PolicyRule, &str, &str, bool)] = &[
            (
                PolicyRule::resources(&["list"], &[""], &["pods"]),
                "GET",
                pods,
                true,
            ),
            (
                PolicyRule::resources(&["get"], &[""], &["pods"]),
                "GET",
                pods,
                false,
            ),
            (
                PolicyRule::resources(&["*"], &[""], &["pods"]),
                "DELETE",
                pods,
                true,
            ),
            (
                PolicyRule::resources(&["list"], &["apps"], &["pods"]),
                "GET",
                pods,
                false,
            ),
            (
                PolicyRule::resources(&["list"], &["*"], &["*"]),
                "GET",
                pods,
                true,
            ),
            (
                PolicyRule::resources(&["get"], &[""], &["pods"]),
                "GET",
                "/api/v1/namespaces/ns/pods/p/log",
                false,
            ),
            (
                PolicyRule::resources(&["get"], &[""], &["pods/log"]),
                "GET",
                "/api/v1/namespaces/ns/pods/p/log",
                true,
            ),
            (
                PolicyRule::resources(&["get"], &[""], &["*/log"]),
                "GET",
                "/api/v1/namespaces/ns/pods/p/log",
                true,
            ),
            (
                PolicyRule::resources(&["get"], &[""], &["pods/*"]),
                "GET",
                "/api/v1/namespaces/ns/pods/p/log",
                false,
            ),
            (
                PolicyRule::resources(&["get"], &[""], &["*/status"]),
                "GET",
                "/api/v1/namespaces/ns/pods/p/log",
                false,
            ),
            (
                PolicyRule::resources(&["get"], &[""], &["secrets"]).named(&["s1"]),
                "GET",
                "/api/v1/namespaces/ns/secrets/s1",
                true,
            ),
            (
                PolicyRule::resources(&["get"], &[""], &["secrets"]).named(&["s1"]),
                "GET",
                "/api/v1/namespaces/ns/secrets/s2",
                false,
            ),
            (
                PolicyRule::resources(&["list"], &[""], &["secrets"]).named(&["s1"]),
                "GET",
                "/api/v1/namespaces/ns/secrets",
                false,
            ),
            (
                PolicyRule::resources(&["create"], &[""], &["pods/exec"]),
                "GET",
                "/api/v1/namespaces/ns/pods/p/exec",
                true,
            ),
            (
                PolicyRule::urls(&["get"], &["/metrics"]),
                "GET",
                "/metrics",
                true,
            ),
            (
                PolicyRule::urls(&["get"], &["/metrics"]),
                "POST",
                "/metrics",
                false,
            ),
            (
                PolicyRule::urls(&["get"], &["/apis/*"]),
                "GET",
                "/apis/apps/v1",
                true,
            ),
            (
                PolicyRule::urls(&["get"], &["/apis/*"]),
                "GET",
                "/apis",
                false,
            ),
            (PolicyRule::urls(&["get"], &["/api*"]), "GET", "/apis", true),
            (PolicyRule::urls(&["*"], &["*"]), "GET", "/healthz", true),
            (
                PolicyRule::urls(&["get"], &["/healthz"]),
                "GET",
                pods,
                false,
            ),
            (
                PolicyRule::resources(&["get"], &["*"], &["*"]),
                "GET",
                "/healthz",
                false,
            ),
        ];
        for (rule, method, path, expected) in cases {
            assert_eq!(
                allows(rule, method, path),
                *expected,
                "{rule:?} {method} {path}"
            );
        }
    }

    /// After kube's rule_test.go `TestCoversExactMatch` and friends.
    #[test]
    fn covers_finds_what_is_missing() {
        let owner = vec![
            PolicyRule::resources(&["get", "list"], &["", "apps"], &["pods", "deployments/*"]),
            PolicyRule::resources(&["get"], &[""], &["secrets"]).named(&["s1"]),
            PolicyRule::urls(&["get"], &["/apis/*"]),
        ];
        let covered = [
            PolicyRule::resources(&["get"], &["apps"], &["pods"]),
            PolicyRule::resources(&["list"], &[""], &["deployments/scale"]),
            PolicyRule::resources(&["get"], &[""], &["secrets"]).named(&["s1"]),
            PolicyRule::urls(&["get"], &["/apis/apps"]),
        ];
        assert!(uncovered(&owner, &covered).is_empty());
        let missing = uncovered(
            &owner,
            &[
                PolicyRule::resources(&["get", "delete", "watch"], &[""], &["pods", "secrets"]),
                PolicyRule::urls(&["get"], &["/healthz"]),
            ],
        );
        let printed: Vec<String> = compact(missing)
            .iter()
            .map(PolicyRule::compact_string)
            .collect();
        assert_eq!(
            printed,
            [
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete" "watch"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete" "watch"]}"#,
                r#"{NonResourceURLs:["/healthz"], Verbs:["get"]}"#,
            ]
        );
        let star = [
            PolicyRule::resources(&["*"], &["*"], &["*"]),
            PolicyRule::urls(&["*"], &["*"]),
        ];
        assert!(uncovered(&star, &owner).is_empty());
        // A named grant does not cover every name.
        assert_eq!(
            uncovered(
                &owner,
                &[PolicyRule::resources(&["get"], &[""], &["secrets"])]
            )
            .len(),
            1
        );
    }
}

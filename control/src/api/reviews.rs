//! The review kinds, answered and never stored (kube-apiserver's
//! `authorization.k8s.io/v1` and `authentication.k8s.io/v1` REST storage):
//! SubjectAccessReview, LocalSubjectAccessReview and SelfSubjectAccessReview
//! (`kubectl auth can-i`) ask the authorizer about one request,
//! SelfSubjectRulesReview (`kubectl auth can-i --list`) lists the rules a
//! user holds in a namespace, SelfSubjectReview (`kubectl auth whoami`)
//! says who the user is.

use http::Method;
use serde_json::{Value, json};

use super::status::ApiError;
use super::{Api, ApiRequest, Reply};
use crate::authz::node::identity::{NodeIdentity, node_identity};
use crate::authz::{Action, Attributes, Policy, PolicyRule, ResourceAction, User};
use crate::validation::{FieldError, Rendered, invalid_status};

pub const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";
pub const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

/// One of the review resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    SubjectAccess,
    /// In the namespace of the URL.
    LocalSubjectAccess,
    SelfSubjectAccess,
    SelfSubjectRules,
    SelfSubject,
}

/// `(group, plural, kind, namespaced)` of each review.
const REVIEWS: &[(Review, &str, &str, &str, bool)] = &[
    (
        Review::SubjectAccess,
        AUTHORIZATION_GROUP,
        "subjectaccessreviews",
        "SubjectAccessReview",
        false,
    ),
    (
        Review::LocalSubjectAccess,
        AUTHORIZATION_GROUP,
        "localsubjectaccessreviews",
        "LocalSubjectAccessReview",
        true,
    ),
    (
        Review::SelfSubjectAccess,
        AUTHORIZATION_GROUP,
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        false,
    ),
    (
        Review::SelfSubjectRules,
        AUTHORIZATION_GROUP,
        "selfsubjectrulesreviews",
        "SelfSubjectRulesReview",
        false,
    ),
    (
        Review::SelfSubject,
        AUTHENTICATION_GROUP,
        "selfsubjectreviews",
        "SelfSubjectReview",
        false,
    ),
];

impl Review {
    /// The review `plural` of `group`, for a URL in a namespace or not.
    pub fn find(group: &str, plural: &str, namespaced: bool) -> Option<Self> {
        REVIEWS
            .iter()
            .find(|(_, g, p, _, n)| *g == group && *p == plural && *n == namespaced)
            .map(|(review, ..)| *review)
    }

    fn entry(self) -> &'static (Review, &'static str, &'static str, &'static str, bool) {
        REVIEWS
            .iter()
            .find(|(review, ..)| *review == self)
            .expect("every review is listed")
    }

    fn kind(self) -> &'static str {
        self.entry().3
    }

    fn group(self) -> &'static str {
        self.entry().1
    }

    /// Every review of `group`, for discovery: `(plural, kind, namespaced)`.
    pub fn of_group(group: &str) -> Vec<(&'static str, &'static str, bool)> {
        REVIEWS
            .iter()
            .filter(|(_, g, ..)| *g == group)
            .map(|(_, _, plural, kind, namespaced)| (*plural, *kind, *namespaced))
            .collect()
    }
}

/// The groups of the reviews, each with its one version.
pub const GROUPS: [&str; 2] = [AUTHENTICATION_GROUP, AUTHORIZATION_GROUP];
pub const VERSION: &str = "v1";

/// The reviews' groups in `/apis`.
pub fn groups() -> Vec<Value> {
    GROUPS
        .iter()
        .map(|group| {
            let version =
                json!({ "groupVersion": format!("{group}/{VERSION}"), "version": VERSION });
            json!({ "name": group, "versions": [version.clone()], "preferredVersion": version })
        })
        .collect()
}

/// `/apis/<group>/v1` of a review group.
pub fn resources(group: &str) -> Value {
    let resources: Vec<Value> = Review::of_group(group)
        .into_iter()
        .map(|(plural, kind, namespaced)| {
            json!({
                "name": plural,
                "singularName": "",
                "namespaced": namespaced,
                "kind": kind,
                "verbs": ["create"],
            })
        })
        .collect();
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{group}/{VERSION}"),
        "resources": resources,
    })
}

/// The reviews' groups in aggregated discovery.
pub fn aggregated_groups() -> Vec<Value> {
    GROUPS
        .iter()
        .map(|group| {
            let resources: Vec<Value> = Review::of_group(group)
                .into_iter()
                .map(|(plural, kind, namespaced)| {
                    json!({
                        "resource": plural,
                        "responseKind": { "group": group, "version": VERSION, "kind": kind },
                        "scope": if namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": "",
                        "verbs": ["create"],
                    })
                })
                .collect();
            json!({
                "metadata": { "name": group },
                "versions": [{ "version": VERSION, "resources": resources, "freshness": "Current" }],
            })
        })
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

impl Api {
    /// POST of a review by `user` (none for in-process callers, which
    /// have nobody to ask about).
    pub(super) fn review(
        &self,
        review: Review,
        namespace: Option<&str>,
        request: &ApiRequest,
    ) -> Result<Reply, ApiError> {
        let method = &request.method;
        let user = request.user.as_ref();
        if method != Method::POST {
            return Err(ApiError::method_not_allowed(method.as_str()));
        }
        let (Some(user), Some(authz)) = (user, &self.authz) else {
            return Err(ApiError::forbidden(
                "reviews are answered for authenticated requests only",
            ));
        };
        let authorizer = authz.authorizer();
        let mut object =
            super::objects::decode_body(request.content_type.as_deref(), &request.body)?;
        if text(&object["kind"]) != review.kind() {
            return Err(ApiError::bad_request(format!(
                "the body is a {:?}, not a {}",
                text(&object["kind"]),
                review.kind()
            )));
        }
        let status = match review {
            Review::SelfSubject => json!({ "userInfo": {
                "username": user.name,
                "uid": user.uid,
                "groups": user.groups,
            }}),
            Review::SelfSubjectRules => {
                let namespace = text(&object["spec"]["namespace"]);
                rules_status(&authorizer.policy, user, &namespace)
            }
            Review::SelfSubjectAccess | Review::SubjectAccess | Review::LocalSubjectAccess => {
                let subject = match review {
                    Review::SelfSubjectAccess => user.clone(),
                    _ => reviewed_user(&object["spec"]),
                };
                let action = requested_action(review, &object["spec"], namespace)?;
                let decision = authorizer.authorize(&Attributes {
                    user: subject,
                    action,
                });
                let mut status = json!({ "allowed": decision.allowed() });
                if !decision.reason().is_empty() {
                    status["reason"] = json!(decision.reason());
                }
                status
            }
        };
        object["status"] = status;
        if object["metadata"].is_null() {
            object["metadata"] = json!({ "creationTimestamp": null });
        }
        Ok(Reply::Json {
            code: 201,
            body: object,
            warnings: Vec::new(),
        })
    }
}

/// The user a SubjectAccessReview asks about.
fn reviewed_user(spec: &Value) -> User {
    User {
        name: text(&spec["user"]),
        uid: text(&spec["uid"]),
        groups: strings(&spec["groups"]),
        extra: Default::default(),
    }
}

/// The request an access review asks about, validated as kube's
/// `ValidateSubjectAccessReviewSpec` and its local and self variants.
fn requested_action(
    review: Review,
    spec: &Value,
    url_namespace: Option<&str>,
) -> Result<Action, ApiError> {
    let resource = &spec["resourceAttributes"];
    let non_resource = &spec["nonResourceAttributes"];
    let mut errors = Vec::new();
    match (resource.is_null(), non_resource.is_null()) {
        (false, false) => errors.push(FieldError::invalid(
            "spec.nonResourceAttributes",
            Rendered(non_resource.to_string()),
            "cannot be specified in combination with resourceAttributes",
        )),
        (true, true) => errors.push(FieldError::invalid(
            "spec.resourceAttributes",
            Rendered("nil".to_owned()),
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => {}
    }
    if review == Review::LocalSubjectAccess && !non_resource.is_null() {
        errors.push(FieldError::invalid(
            "spec.nonResourceAttributes",
            Rendered(non_resource.to_string()),
            "disallowed on this kind of request",
        ));
    }
    if review == Review::SubjectAccess
        && text(&spec["user"]).is_empty()
        && strings(&spec["groups"]).is_empty()
    {
        errors.push(FieldError::invalid(
            "spec.user",
            "",
            "at least one of user or group must be specified",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(invalid_status(
            review.group(),
            review.kind(),
            "",
            &errors,
        )));
    }
    if non_resource.is_object() {
        return Ok(Action::NonResource {
            verb: text(&non_resource["verb"]),
            path: text(&non_resource["path"]),
        });
    }
    let namespace = text(&resource["namespace"]);
    if let Some(url_namespace) = url_namespace
        && namespace != url_namespace
    {
        return Err(ApiError::bad_request(format!(
            "spec.resourceAttributes.namespace must match namespace: {url_namespace}"
        )));
    }
    Ok(Action::Resource(ResourceAction {
        verb: text(&resource["verb"]),
        group: text(&resource["group"]),
        version: text(&resource["version"]),
        resource: text(&resource["resource"]),
        subresource: text(&resource["subresource"]),
        namespace,
        name: text(&resource["name"]),
    }))
}

/// A SelfSubjectRulesReview's status: the rules `user` holds in
/// `namespace`, split as kube splits them.
fn rules_status(policy: &Policy, user: &User, namespace: &str) -> Value {
    let (mut rules, mut errors) = policy.rules_for(user, namespace);
    // The Node authorizer grants by object, not by rules (kube's `RulesFor`
    // of the Node authorizer).
    if node_identity(user) != NodeIdentity::NotANode {
        errors.insert(
            0,
            "node authorizer does not support user rule resolution".to_owned(),
        );
    }
    if user.in_group(crate::authz::user::SYSTEM_MASTERS) {
        rules.insert(0, PolicyRule::urls(&["*"], &["*"]));
        rules.insert(0, PolicyRule::resources(&["*"], &["*"], &["*"]));
    }
    let (non_resource, resource): (Vec<&PolicyRule>, Vec<&PolicyRule>) = rules
        .iter()
        .partition(|rule| !rule.non_resource_urls.is_empty());
    let resource_rules: Vec<Value> = resource
        .iter()
        .map(|rule| {
            let mut value = json!({
                "verbs": rule.verbs,
                "apiGroups": rule.api_groups,
                "resources": rule.resources,
            });
            if !rule.resource_names.is_empty() {
                value["resourceNames"] = json!(rule.resource_names);
            }
            value
        })
        .collect();
    let non_resource_rules: Vec<Value> = non_resource
        .iter()
        .map(|rule| json!({ "verbs": rule.verbs, "nonResourceURLs": rule.non_resource_urls }))
        .collect();
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": !errors.is_empty(),
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    status
}

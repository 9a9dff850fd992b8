//! Impersonation (`Impersonate-User`, `Impersonate-Group`,
//! `Impersonate-Uid`), as kube-apiserver's filter does it: each requested
//! identity needs the `impersonate` verb on users (or the service
//! account), groups and uids, and the request then runs as that user.

use http::HeaderMap;

use super::attributes::{Action, Attributes, ResourceAction};
use super::chain::Authorizer;
use super::user::{SERVICE_ACCOUNT_PREFIX, User};

const USER_HEADER: &str = "impersonate-user";
const GROUP_HEADER: &str = "impersonate-group";
const UID_HEADER: &str = "impersonate-uid";

/// Why an impersonation is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// 400: the headers do not make sense.
    BadRequest(String),
    /// 403: the requester may not act as this.
    Forbidden(Box<Attributes>),
}

/// The user `requester` acts as: itself without impersonation headers.
pub fn acting_user(
    authorizer: &Authorizer,
    requester: User,
    headers: &HeaderMap,
) -> Result<User, Refused> {
    let text = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .map(str::to_owned)
            .collect()
    };
    let names = text(USER_HEADER);
    let groups = text(GROUP_HEADER);
    let uids = text(UID_HEADER);
    let Some(name) = names.first() else {
        if groups.is_empty() && uids.is_empty() {
            return Ok(requester);
        }
        return Err(Refused::BadRequest(format!(
            "requested {} without impersonating a user",
            describe(&groups, &uids)
        )));
    };
    let check = |resource: &str, group: &str, namespace: &str, target: &str| {
        let attributes = Attributes {
            user: requester.clone(),
            action: Action::Resource(ResourceAction {
                verb: "impersonate".to_owned(),
                group: group.to_owned(),
                resource: resource.to_owned(),
                namespace: namespace.to_owned(),
                name: target.to_owned(),
                ..ResourceAction::default()
            }),
        };
        if authorizer.authorize(&attributes).allowed() {
            Ok(())
        } else {
            Err(Refused::Forbidden(Box::new(attributes)))
        }
    };
    let service_account = name
        .strip_prefix(SERVICE_ACCOUNT_PREFIX)
        .and_then(|rest| rest.split_once(':'));
    match service_account {
        Some((namespace, account)) => check("serviceaccounts", "", namespace, account)?,
        None => check("users", "", "", name)?,
    }
    for group in &groups {
        check("groups", "", "", group)?;
    }
    for uid in &uids {
        check("uids", "authentication.k8s.io", "", uid)?;
    }
    let mut acting_groups = groups.clone();
    if let Some((namespace, _)) = service_account
        && groups.is_empty()
    {
        acting_groups = vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{namespace}"),
        ];
    }
    let user = User {
        name: name.clone(),
        uid: uids.first().cloned().unwrap_or_default(),
        groups: acting_groups,
        extra: Default::default(),
    };
    Ok(if name == "system:anonymous" {
        user
    } else {
        user.authenticated()
    })
}

fn describe(groups: &[String], uids: &[String]) -> String {
    let mut parts: Vec<String> = groups.iter().map(|g| format!("group {g:?}")).collect();
    parts.extend(uids.iter().map(|uid| format!("uid {uid:?}")));
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::json;

    use super::*;
    use crate::authz::policy::Policy;
    use crate::authz::user::AUTHENTICATED;

    fn user(name: &str, groups: &[&str]) -> User {
        User::in_groups(name, groups)
    }

    #[test]
    fn impersonation_needs_the_impersonate_verb_on_each_identity() {
        let mut policy = Policy::default();
        policy.add_cluster_role(&json!({
            "metadata": { "name": "impersonator" },
            "rules": [
                { "verbs": ["impersonate"], "apiGroups": [""], "resources": ["users"], "resourceNames": ["bob"] },
                { "verbs": ["impersonate"], "apiGroups": [""], "resources": ["groups"], "resourceNames": ["developers"] },
            ],
        }));
        policy.add_cluster_role_binding(&json!({
            "metadata": { "name": "carol-impersonates" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "impersonator" },
            "subjects": [{ "kind": "User", "name": "carol" }],
        }));
        let policy = Authorizer {
            policy: policy.into(),
            ..Authorizer::default()
        };
        let carol = user("carol", &["system:authenticated"]);
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(*name, HeaderValue::from_static(value));
            }
            headers
        };

        assert_eq!(
            acting_user(&policy, carol.clone(), &headers(&[])).unwrap(),
            carol
        );
        let bob = acting_user(
            &policy,
            carol.clone(),
            &headers(&[
                ("Impersonate-User", "bob"),
                ("Impersonate-Group", "developers"),
            ]),
        )
        .unwrap();
        assert_eq!(bob, user("bob", &["developers", "system:authenticated"]));

        let Err(Refused::Forbidden(denied)) = acting_user(
            &policy,
            carol.clone(),
            &headers(&[("Impersonate-User", "alice")]),
        ) else {
            panic!("alice may not be impersonated");
        };
        assert_eq!(
            denied.forbidden_message(),
            "User \"carol\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        );
        assert!(matches!(
            acting_user(
                &policy,
                carol.clone(),
                &headers(&[
                    ("Impersonate-User", "bob"),
                    ("Impersonate-Group", "system:masters")
                ])
            ),
            Err(Refused::Forbidden(_))
        ));
        assert!(matches!(
            acting_user(
                &policy,
                carol.clone(),
                &headers(&[("Impersonate-Group", "developers")])
            ),
            Err(Refused::BadRequest(_))
        ));
        let masters = user("alice", &["system:masters"]);
        let account = acting_user(
            &policy,
            masters,
            &headers(&[("Impersonate-User", "system:serviceaccount:ns:robot")]),
        )
        .unwrap();
        assert_eq!(
            account.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:ns",
                AUTHENTICATED
            ]
        );
    }
}

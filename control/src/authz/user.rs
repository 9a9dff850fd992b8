//! Who a request is from, as authentication found it (apiserver's
//! `user.Info`), and the groups Kubernetes gives a meaning to.

/// The group whose members may do anything (kube-apiserver's privileged
/// group, which the admin certificate names).
pub const SYSTEM_MASTERS: &str = "system:masters";
/// Every authenticated user is in this group.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Requests without credentials are in this group.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The group of every node's credential.
pub const NODES_GROUP: &str = "system:nodes";
/// The prefix of a node's user name: `system:node:<node>`.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The prefix of a service account's user name.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// kube's `UserInfo.Extra` (a service account's pod and credential).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl User {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The user with `system:authenticated` among its groups, as every
    /// authenticator's answer is completed in kube-apiserver.
    pub fn authenticated(mut self) -> Self {
        if !self.in_group(AUTHENTICATED) {
            self.groups.push(AUTHENTICATED.to_owned());
        }
        self
    }

    /// Whether this is the service account `namespace`/`name`.
    pub fn is_service_account(&self, namespace: &str, name: &str) -> bool {
        self.name
            .strip_prefix(SERVICE_ACCOUNT_PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(ns, n)| ns == namespace && n == name)
    }
}

#[cfg(test)]
impl User {
    /// `name` in `groups`, without uid or extra.
    pub fn in_groups(name: &str, groups: &[&str]) -> Self {
        Self {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|&g| g.to_owned()).collect(),
            extra: Default::default(),
        }
    }

    /// The credential of node `node`.
    pub fn node(node: &str) -> Self {
        Self::in_groups(&format!("{NODE_USER_PREFIX}{node}"), &[NODES_GROUP])
    }
}

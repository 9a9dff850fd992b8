//! Authorization of every authenticated request, before it reaches the API
//! or a stream: who it acts as (impersonation), then what it asks judged
//! by the authorizer chain (Node, then RBAC), refused as kube-apiserver
//! refuses it.

use http::HeaderMap;

use crate::api::{ApiError, Query};
use crate::authz::impersonation::{self, Refused};
use crate::authz::{Action, Attributes, Authorizer, Decision, ListOptions, User, action};

/// The user the request acts as, once it may do what it asks.
pub fn authorize(
    authorizer: &Authorizer,
    user: User,
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<User, ApiError> {
    let user =
        impersonation::acting_user(authorizer, user, headers).map_err(|refused| match refused {
            Refused::BadRequest(message) => ApiError::bad_request(message),
            Refused::Forbidden(attributes) => forbidden(&attributes, ""),
        })?;
    let query = Query::parse(query)?;
    let options = ListOptions {
        watch: query.flag("watch")?,
        field_selector: query.get("fieldSelector"),
    };
    let attributes = Attributes {
        user,
        action: action(method, path, options),
    };
    match authorizer.authorize(&attributes) {
        Decision::Allow(_) => Ok(attributes.user),
        Decision::Deny(reason) => Err(forbidden(&attributes, &reason)),
    }
}

/// kube-apiserver's `responsewriters.Forbidden`.
fn forbidden(attributes: &Attributes, reason: &str) -> ApiError {
    let mut why = attributes.forbidden_message();
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    match &attributes.action {
        Action::Resource(info) => {
            ApiError::forbidden_on(&info.group, &info.resource, &info.name, &why)
        }
        Action::NonResource { .. } => ApiError::forbidden_on("", "", "", &why),
    }
}

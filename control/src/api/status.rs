//! Errors as Kubernetes `Status` objects with their HTTP codes, worded like
//! kube-apiserver's so `kubectl` prints the messages people know.

use serde_json::{Value, json};

use super::registry::Resource;
use crate::kinds::Refusal;
use crate::store::StoreError;
use crate::validation::invalid_status;

/// How long a client is told to wait before retrying while etcd is
/// unavailable: etcd's own leader election takes about a second.
const RETRY_AFTER_SECONDS: u64 = 1;

/// A failed request: the HTTP code and the `Status` body to send.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `Status.details`, when the error is about one object.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn about(mut self, resource: &Resource, name: &str) -> Self {
        self.details = Some(json!({
            "name": name,
            "group": resource.group,
            "kind": resource.plural,
        }));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// kube's `NewForbidden`: `why` the request on `name` of `resource` in
    /// `group` is refused; details as Go's omitempty leaves them.
    pub fn forbidden_on(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let qualified = if group.is_empty() {
            resource.to_owned()
        } else {
            format!("{resource}.{group}")
        };
        let message = match (resource.is_empty(), name.is_empty()) {
            (true, _) => format!("forbidden: {why}"),
            (false, true) => format!("{qualified} is forbidden: {why}"),
            (false, false) => format!("{qualified} \"{name}\" is forbidden: {why}"),
        };
        let mut details = serde_json::Map::new();
        for (key, value) in [("name", name), ("group", group), ("kind", resource)] {
            if !value.is_empty() {
                details.insert(key.to_owned(), json!(value));
            }
        }
        Self {
            details: Some(Value::Object(details)),
            ..Self::new(403, "Forbidden", message)
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn not_found(resource: &Resource, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(resource)),
        )
        .about(resource, name)
    }

    /// A path that names no resource.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    pub fn already_exists(resource: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(resource)),
        )
        .about(resource, name)
    }

    pub fn conflict(resource: &Resource, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified(resource)
            ),
        )
        .about(resource, name)
    }

    /// 409 for an apply that would change fields other managers own, with
    /// one `FieldManagerConflict` cause per field.
    pub fn apply_conflict(conflicts: &crate::patch::Conflicts) -> Self {
        let causes: Vec<Value> = conflicts
            .0
            .iter()
            .map(|conflict| {
                json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with {}", conflict.manager),
                    "field": conflict.field,
                })
            })
            .collect();
        Self {
            details: Some(json!({ "causes": causes })),
            ..Self::new(409, "Conflict", conflicts.to_string())
        }
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/strategic-merge-patch+json, application/json-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    /// 422 with the causes the validation module found.
    pub fn invalid(status: crate::validation::InvalidStatus) -> Self {
        let causes: Vec<Value> = status
            .details
            .causes
            .iter()
            .map(|cause| json!({ "reason": cause.reason, "message": cause.message, "field": cause.field }))
            .collect();
        Self {
            code: status.code,
            reason: "Invalid",
            message: status.message,
            details: Some(json!({
                "name": status.details.name,
                "group": status.details.group,
                "kind": status.details.kind,
                "causes": causes,
            })),
        }
    }

    /// kube-apiserver's `NewRequestEntityTooLargeError`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: {}", message.into()),
        )
    }

    /// kube-apiserver's answer when too many requests are in flight.
    pub fn too_many_requests() -> Self {
        Self {
            details: Some(json!({ "retryAfterSeconds": RETRY_AFTER_SECONDS })),
            ..Self::new(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
            )
        }
    }

    /// A patch that cannot apply: 413 when it is too large, else 400.
    pub fn from_patch(error: crate::patch::PatchError) -> Self {
        if error.is_too_large() {
            Self::too_large(error.to_string())
        } else {
            Self::bad_request(error.to_string())
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// 503 while etcd cannot be reached, with `details.retryAfterSeconds`
    /// (sent as `Retry-After`), as kube-apiserver's `NewServiceUnavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            details: Some(json!({ "retryAfterSeconds": RETRY_AFTER_SECONDS })),
            ..Self::new(503, "ServiceUnavailable", message)
        }
    }

    /// What the strategy of `resource` refused about the object `name`.
    pub fn refused(refusal: Refusal, resource: &Resource, name: &str) -> Self {
        match refusal {
            Refusal::Invalid(errors) => {
                Self::invalid(invalid_status(resource.group, resource.kind, name, &errors))
            }
            Refusal::BadRequest(message) => Self::bad_request(message),
            Refusal::Forbidden(message) => Self::forbidden(message),
            Refusal::Conflict(why) => Self::conflict(resource, name, &why),
            Refusal::Internal(message) => Self::internal(message),
            Refusal::Unavailable(message) => Self::unavailable(message),
        }
    }

    /// A storage failure about one object of `resource`.
    pub fn from_store(error: StoreError, resource: &Resource, name: &str) -> Self {
        match error {
            StoreError::NotFound { .. } => Self::not_found(resource, name),
            StoreError::AlreadyExists { .. } => Self::already_exists(resource, name),
            StoreError::Conflict { .. } => Self::conflict(resource, name, &error.to_string()),
            StoreError::PreconditionFailed { message } => Self::conflict(resource, name, &message),
            StoreError::Compacted { .. } => Self::gone(
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter.",
            ),
            StoreError::InvalidContinue { reason } => {
                Self::bad_request(format!("continue key is not valid: {reason}"))
            }
            other if other.is_unavailable() => Self::unavailable(other.to_string()),
            other if other.is_too_large() => Self::too_large(other.to_string()),
            other => Self::internal(other.to_string()),
        }
    }

    /// The `Status` body.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// `services` or `deployments.apps`, as kube-apiserver names resources in
/// messages.
fn qualified(resource: &Resource) -> String {
    if resource.group.is_empty() {
        resource.plural.to_owned()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

/// The `Status` of a successful delete.
pub fn deleted(resource: &Resource, name: &str, uid: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": { "name": name, "group": resource.group, "kind": resource.plural, "uid": uid },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::find;

    #[test]
    fn statuses_read_like_kube_apiserver() {
        let services = find("", "v1", "services").unwrap();
        let status = ApiError::not_found(services, "web").status();
        assert_eq!(status["message"], "services \"web\" not found");
        assert_eq!(status["code"], 404);
        assert_eq!(status["details"]["kind"], "services");

        let deployments = find("apps", "v1", "deployments").unwrap();
        let conflict =
            ApiError::from_store(StoreError::Conflict { key: "k".into() }, deployments, "web");
        assert_eq!(conflict.code, 409);
        assert_eq!(
            conflict.message,
            "Operation cannot be fulfilled on deployments.apps \"web\": the object has been \
             modified; please apply your changes to the latest version and try again"
        );
    }
}

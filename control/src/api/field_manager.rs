//! Who a write is recorded as in `metadata.managedFields`, and the
//! recording itself: the `fieldManager` parameter, else the program name of
//! the `User-Agent` (`kubectl/v1.37.0 (linux/amd64) ...` is `kubectl`), as
//! kube-apiserver names managers.

use serde_json::Value;

use super::query::Query;
use super::registry::Resource;
use super::status::ApiError;
use crate::clock;
use crate::patch::{self, Manager, Operation, Write};
use crate::validation::{FieldError, invalid_status};

/// The manager of the server's own writes (bootstrap objects, controllers).
pub const SERVER: &str = "skiff-control";

/// kube-apiserver's limit on a manager's name.
const MAX_NAME: usize = 128;

/// The manager of a write of `operation` on `subresource` from a client.
pub fn from_request(
    query: &Query,
    user_agent: Option<&str>,
    operation: Operation,
    subresource: Option<&str>,
) -> Manager {
    let name = match query.get("fieldManager") {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => {
            let program = user_agent.unwrap_or_default().split('/').next();
            let program = program.filter(|p| !p.is_empty()).unwrap_or("unknown");
            program.chars().take(MAX_NAME).collect()
        }
    };
    Manager {
        name,
        operation,
        subresource: subresource.map(str::to_owned),
    }
}

/// The manager of the server's own writes.
pub fn server() -> Manager {
    Manager {
        name: SERVER.to_owned(),
        operation: Operation::Update,
        subresource: None,
    }
}

/// The checks kube-apiserver makes on a PATCH's options: an apply needs a
/// `fieldManager`, `force` is for applies only, names are at most 128
/// characters.
pub fn check_patch_options(query: &Query, apply: bool) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    let manager = query.get("fieldManager").unwrap_or_default();
    if apply && manager.is_empty() {
        errors.push(FieldError::required(
            "fieldManager",
            "is required for apply patch",
        ));
    }
    if !apply && query.get("force").is_some() {
        errors.push(FieldError::forbidden(
            "force",
            "may not be specified for non-apply patch",
        ));
    }
    if manager.chars().count() > MAX_NAME {
        errors.push(FieldError::too_long("fieldManager", MAX_NAME));
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(invalid_status(
        "meta.k8s.io",
        "PatchOptions",
        "",
        &errors,
    )))
}

/// The time to record on a write now.
fn now() -> String {
    clock::now().as_str().unwrap_or_default().to_owned()
}

/// Records the update of `before` (`None`: a create) to `after` by `manager`.
pub fn record(
    before: Option<&Value>,
    after: &mut Value,
    manager: &Manager,
    resource: &Resource,
) -> Result<(), ApiError> {
    let api_version = resource.api_version();
    let now = now();
    let write = Write {
        manager,
        api_version: &api_version,
        now: &now,
    };
    patch::record_update(before, after, &write)
        .map_err(|error| ApiError::bad_request(format!("failed to decode managed fields: {error}")))
}

/// Server-side apply of `config` by `manager` to `live` (`None`: create it).
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &Manager,
    resource: &Resource,
    force: bool,
) -> Result<Value, ApiError> {
    let api_version = resource.api_version();
    let now = now();
    let write = Write {
        manager,
        api_version: &api_version,
        now: &now,
    };
    // The main resource cannot set the status of kinds that keep it apart.
    let ignored: &[&str] = if resource.strategy.keeps_status_on_update() {
        &["status"]
    } else {
        &[]
    };
    patch::server_side_apply(live, config, &write, force, ignored).map_err(|error| match error {
        patch::ApplyError::Conflicts(conflicts) => ApiError::apply_conflict(&conflicts),
        other => ApiError::bad_request(other.to_string()),
    })
}

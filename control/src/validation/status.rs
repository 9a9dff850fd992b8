//! The `Status` body of a 422 Unprocessable Entity answer, as kube-apiserver's
//! `errors.NewInvalid` builds it.

use serde::Serialize;

use super::field::FieldError;

/// A `meta.k8s.io/v1` `Status` with reason `Invalid`. Its fields serialize in
/// kube-apiserver's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvalidStatus {
    kind: &'static str,
    api_version: &'static str,
    metadata: EmptyMeta,
    status: &'static str,
    pub message: String,
    reason: &'static str,
    pub details: Details,
    pub code: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct EmptyMeta {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Details {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    pub kind: String,
    pub causes: Vec<Cause>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

impl InvalidStatus {
    /// The JSON body to send.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a Status always serializes")
    }
}

/// The 422 `Status` for object `name` of `kind` in API `group` ("" for the
/// core group) rejected with `errors`.
pub fn invalid_status(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> InvalidStatus {
    let qualified_kind = if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    };
    // Like apimachinery's aggregate: repeated messages are shown once, and a
    // single message goes without brackets.
    let mut messages: Vec<String> = Vec::new();
    for error in errors {
        let message = error.to_string();
        if !messages.contains(&message) {
            messages.push(message);
        }
    }
    let message = match messages.as_slice() {
        [] => format!("{qualified_kind} \"{name}\" is invalid"),
        [one] => format!("{qualified_kind} \"{name}\" is invalid: {one}"),
        many => format!(
            "{qualified_kind} \"{name}\" is invalid: [{}]",
            many.join(", ")
        ),
    };
    InvalidStatus {
        kind: "Status",
        api_version: "v1",
        metadata: EmptyMeta {},
        status: "Failure",
        message,
        reason: "Invalid",
        details: Details {
            name: name.to_owned(),
            group: group.to_owned(),
            kind: kind.to_owned(),
            causes: errors
                .iter()
                .map(|e| Cause {
                    reason: e.kind.cause_type(),
                    message: e.body(),
                    field: e.field.clone(),
                })
                .collect(),
        },
        code: 422,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_error_matches_kube_apiserver() {
        let errs = [FieldError::invalid(
            "spec.ports[0].port",
            0,
            "must be between 1 and 65535, inclusive",
        )];
        assert_eq!(
            invalid_status("", "Service", "web", &errs).to_json(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Service \"web\" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive","reason":"Invalid","details":{"name":"web","kind":"Service","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: 0: must be between 1 and 65535, inclusive","field":"spec.ports[0].port"}]},"code":422}"#
        );
    }

    #[test]
    fn several_errors_are_bracketed_and_deduplicated() {
        let errs = [
            FieldError::required("spec.selector", ""),
            FieldError::required("spec.selector", ""),
            FieldError::forbidden("spec.template", "nope"),
        ];
        let status = invalid_status("apps", "Deployment", "web", &errs);
        assert_eq!(
            status.message,
            "Deployment.apps \"web\" is invalid: [spec.selector: Required value, spec.template: Forbidden: nope]"
        );
        assert_eq!(status.details.causes.len(), 3);
        assert_eq!(status.details.causes[0].reason, "FieldValueRequired");
        let json: serde_json::Value = serde_json::from_str(&status.to_json()).unwrap();
        assert_eq!(json["details"]["group"], "apps");
        assert_eq!(json["code"], 422);
    }
}

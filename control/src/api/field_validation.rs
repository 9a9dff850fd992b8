//! Server-side field validation (`?fieldValidation=`): what becomes of the
//! fields of a written object that its type does not declare. kubectl asks
//! for `Strict`; like kube-apiserver, the default is `Warn`.

use serde_json::Value;

use super::query::Query;
use super::registry::Resource;
use super::status::ApiError;
use crate::validation::strict_decoding_message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Dropped silently.
    Ignore,
    /// Dropped, with a `Warning` header each.
    Warn,
    /// The write fails with 400, naming them.
    Strict,
}

impl FieldValidation {
    pub fn from_query(query: &Query) -> Result<Self, ApiError> {
        match query.get("fieldValidation") {
            None | Some("Warn") => Ok(Self::Warn),
            Some("Ignore") => Ok(Self::Ignore),
            Some("Strict") => Ok(Self::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\" or \"Strict\", not {other:?}"
            ))),
        }
    }

    /// Drops the undeclared fields of `object` and returns the warnings to
    /// send, or refuses them (`Strict`). An object that does not decode as
    /// its type is refused whatever the directive, as upstream's decoder
    /// does.
    pub fn apply(self, resource: &Resource, object: &mut Value) -> Result<Vec<String>, ApiError> {
        let cannot_handle = |why: String| {
            ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: {why}",
                kind = resource.kind,
                version = resource.version,
            ))
        };
        let unknown = (resource.typed.strip_unknown_fields)(object)
            .map_err(|error| cannot_handle(error.to_string()))?;
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Self::Ignore => Ok(Vec::new()),
            Self::Warn => Ok(unknown
                .iter()
                .map(|field| format!("unknown field \"{}\"", field.path))
                .collect()),
            Self::Strict => Err(cannot_handle(strict_decoding_message(&unknown))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::find;
    use serde_json::json;

    #[test]
    fn directives() {
        let deployments = find("apps", "v1", "deployments").unwrap();
        let sent = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": "d" },
            "spec": { "replicas": 1, "replica": 2, "selector": {}, "template": {} },
        });
        let mut object = sent.clone();
        let error = FieldValidation::Strict
            .apply(deployments, &mut object)
            .unwrap_err();
        assert_eq!(error.code, 400);
        assert_eq!(
            error.message,
            "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.replica\""
        );
        let mut object = sent.clone();
        let warnings = FieldValidation::Warn
            .apply(deployments, &mut object)
            .unwrap();
        assert_eq!(warnings, ["unknown field \"spec.replica\""]);
        assert!(object["spec"].get("replica").is_none());
        let mut object = sent;
        assert!(
            FieldValidation::Ignore
                .apply(deployments, &mut object)
                .unwrap()
                .is_empty()
        );
        assert!(object["spec"].get("replica").is_none());

        let query = Query::parse(Some("fieldValidation=Bogus")).unwrap();
        assert_eq!(FieldValidation::from_query(&query).unwrap_err().code, 400);
        let query = Query::parse(None).unwrap();
        assert_eq!(
            FieldValidation::from_query(&query).unwrap(),
            FieldValidation::Warn
        );
    }
}

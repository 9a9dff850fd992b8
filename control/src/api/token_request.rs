//! `POST serviceaccounts/<name>/token`: an `authentication.k8s.io/v1`
//! TokenRequest, answered as kube-apiserver's token REST storage does.

use serde_json::{Value, json};

use super::registry::{self, Resource};
use super::state::Api;
use super::status::ApiError;
use crate::clock;
use crate::serviceaccount::{Claims, ISSUER, Ref, Request};
use crate::store::{StoreError, object_key};
use crate::validation::{FieldError, invalid_status};

/// kube's default `spec.expirationSeconds`.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// kube's shortest token lifetime (ten minutes) and longest (2^32 s).
const MIN_EXPIRATION_SECONDS: i64 = 600;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

impl Api {
    /// Issues a token for the service account `name` in `namespace` as the
    /// TokenRequest `sent` asks, and answers the TokenRequest with its
    /// defaults, the token and when it expires.
    pub(super) async fn request_token(
        &self,
        namespace: &str,
        name: &str,
        sent: Value,
    ) -> Result<Value, ApiError> {
        let keys = self
            .config
            .service_account_keys
            .clone()
            .ok_or_else(|| ApiError::internal("this server has no service-account key"))?;
        let spec = &sent["spec"];
        let expiration_seconds = spec["expirationSeconds"]
            .as_i64()
            .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
        validate_expiration(name, expiration_seconds)?;
        let audiences: Vec<String> = match spec["audiences"].as_array() {
            Some(audiences) if !audiences.is_empty() => audiences
                .iter()
                .map(|audience| audience.as_str().unwrap_or_default().to_owned())
                .collect(),
            _ => vec![ISSUER.to_owned()],
        };
        let accounts = resource("serviceaccounts");
        let account = self.stored(accounts, Some(namespace), name).await?;
        let mut request = Request {
            namespace: namespace.to_owned(),
            service_account: reference(&account),
            audiences: audiences.clone(),
            expiration_seconds,
            pod: None,
            secret: None,
            node: None,
        };
        let bound = &spec["boundObjectRef"];
        if bound.is_object() {
            self.bind(&mut request, name, bound).await?;
        }
        let now = clock::unix_now();
        let token = keys.sign(&Claims::new(request, now));
        let mut answer = json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": sent.get("metadata").cloned().unwrap_or_else(|| json!({})),
            "spec": {
                "audiences": audiences,
                "expirationSeconds": expiration_seconds,
                "boundObjectRef": if bound.is_object() { bound.clone() } else { Value::Null },
            },
            "status": {
                "token": token,
                "expirationTimestamp": clock::seconds_from_now(expiration_seconds),
            },
        });
        answer["metadata"]["name"] = json!(name);
        answer["metadata"]["namespace"] = json!(namespace);
        answer["metadata"]["creationTimestamp"] = Value::Null;
        Ok(answer)
    }

    /// Records in `request` the object `bound` names, which must exist (and
    /// have the uid `bound` gives, if any).
    async fn bind(&self, request: &mut Request, name: &str, bound: &Value) -> Result<(), ApiError> {
        let kind = bound["kind"].as_str().unwrap_or_default();
        let api_version = bound["apiVersion"].as_str().unwrap_or_default();
        let object_name = bound["name"].as_str().unwrap_or_default();
        let (plural, namespace) = match (api_version, kind) {
            ("v1", "Pod") => ("pods", Some(request.namespace.as_str())),
            ("v1", "Secret") => ("secrets", Some(request.namespace.as_str())),
            ("v1", "Node") => ("nodes", None),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount \"{name}\" to object of type {}",
                    group_version_kind(api_version, kind)
                )));
            }
        };
        let object = self
            .stored(resource(plural), namespace, object_name)
            .await?;
        if kind == "Pod" && object["spec"]["serviceAccountName"].as_str() != Some(name) {
            return Err(ApiError::bad_request(format!(
                "cannot bind token for serviceaccount \"{name}\" to pod running with different serviceaccount name."
            )));
        }
        let recorded = reference(&object);
        if let Some(uid) = bound["uid"].as_str().filter(|uid| !uid.is_empty())
            && uid != recorded.uid
        {
            return Err(ApiError::conflict(
                resource(plural),
                object_name,
                &format!(
                    "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        match kind {
            "Pod" => request.pod = Some(recorded),
            "Secret" => request.secret = Some(recorded),
            _ => request.node = Some(recorded),
        }
        Ok(())
    }

    async fn stored(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = object_key(resource.storage, namespace, name);
        self.store
            .get(&key)
            .await
            .map_err(|error: StoreError| ApiError::from_store(error, resource, name))
    }
}

/// kube's `ValidateTokenRequest`.
fn validate_expiration(name: &str, seconds: i64) -> Result<(), ApiError> {
    let detail = if seconds < MIN_EXPIRATION_SECONDS {
        "may not specify a duration less than 10 minutes"
    } else if seconds > MAX_EXPIRATION_SECONDS {
        "may not specify a duration larger than 2^32 seconds"
    } else {
        return Ok(());
    };
    let error = FieldError::invalid("spec.expirationSeconds", seconds, detail);
    Err(ApiError::invalid(invalid_status(
        "authentication.k8s.io",
        "TokenRequest",
        name,
        &[error],
    )))
}

fn resource(plural: &str) -> &'static Resource {
    registry::find("", "v1", plural).expect("a core resource")
}

fn reference(object: &Value) -> Ref {
    let text = |field: &str| {
        object["metadata"][field]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    Ref {
        name: text("name"),
        uid: text("uid"),
    }
}

/// How Go prints a `schema.GroupVersionKind`.
fn group_version_kind(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!("{group}/{version}, Kind={kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lifetimes_are_invalid() {
        let error = validate_expiration("default", 599).unwrap_err();
        assert_eq!(error.code, 422);
        assert_eq!(
            error.message,
            "TokenRequest.authentication.k8s.io \"default\" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
        );
        assert!(validate_expiration("default", 600).is_ok());
        assert!(validate_expiration("default", MAX_EXPIRATION_SECONDS + 1).is_err());
        assert_eq!(
            group_version_kind("apps/v1", "Deployment"),
            "apps/v1, Kind=Deployment"
        );
    }
}

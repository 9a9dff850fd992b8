//! Writes of the controllers and the scheduler, made through the API's own
//! code paths (defaults, validation, graceful pod deletion, the binding
//! subresource) in-process, without HTTP.

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use super::kind::Kind;
use crate::api::{Api, ApiRequest, Reply};

/// A write the API refused.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path}: {code} {message}")]
pub struct ClientError {
    pub method: Method,
    pub path: String,
    pub code: u16,
    pub message: String,
}

impl ClientError {
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }

    pub fn is_conflict(&self) -> bool {
        self.code == 409
    }

    /// Refused for good, e.g. a create in a namespace being deleted.
    pub fn is_forbidden(&self) -> bool {
        self.code == 403
    }
}

/// Whether a write went through: `false` when someone else changed or
/// removed the object first (the next pass sees their version).
pub fn written(result: Result<Value, ClientError>) -> Result<bool, ClientError> {
    match result {
        Ok(_) => Ok(true),
        Err(error) if error.is_conflict() || error.is_not_found() => Ok(false),
        Err(error) => Err(error),
    }
}

/// The API, called in-process.
#[derive(Clone)]
pub struct Client {
    api: Api,
}

impl Client {
    pub fn new(api: Api) -> Self {
        Self { api }
    }

    async fn call(
        &self,
        method: Method,
        path: String,
        query: Option<String>,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let body = body.map_or_else(Bytes::new, |body| Bytes::from(body.to_string()));
        let reply = self
            .api
            .handle(ApiRequest {
                method: method.clone(),
                path: path.clone(),
                query,
                content_type: Some(content_type.to_owned()),
                accept: None,
                user_agent: Some(crate::api::SERVER_MANAGER.to_owned()),
                body,
                user: None,
            })
            .await;
        match reply {
            Reply::Json { code, body, .. } if code < 300 => Ok(body),
            Reply::Json { code, body, .. } => Err(ClientError {
                method,
                path,
                code,
                message: body["message"].as_str().unwrap_or_default().to_owned(),
            }),
            _ => Err(ClientError {
                method,
                path,
                code: 500,
                message: "unexpected streaming reply".into(),
            }),
        }
    }

    pub async fn create(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        object: &Value,
    ) -> Result<Value, ClientError> {
        let path = kind.path(namespace, None);
        self.call(Method::POST, path, None, "application/json", Some(object))
            .await
    }

    /// PUT of the whole object; conflicts when it changed since it was read
    /// (its resourceVersion is sent).
    pub async fn update(&self, kind: Kind, object: &Value) -> Result<Value, ClientError> {
        let path = object_path(kind, object);
        self.call(Method::PUT, path, None, "application/json", Some(object))
            .await
    }

    /// PUT of `/status`.
    pub async fn update_status(&self, kind: Kind, object: &Value) -> Result<Value, ClientError> {
        let path = format!("{}/status", object_path(kind, object));
        self.call(Method::PUT, path, None, "application/json", Some(object))
            .await
    }

    /// PUT of `/approval`: sets the object's `status.conditions`.
    pub async fn update_approval(&self, kind: Kind, object: &Value) -> Result<Value, ClientError> {
        let path = format!("{}/approval", object_path(kind, object));
        self.call(Method::PUT, path, None, "application/json", Some(object))
            .await
    }

    /// PUT of `/finalize`: sets the object's `spec.finalizers`.
    pub async fn finalize(&self, kind: Kind, object: &Value) -> Result<Value, ClientError> {
        let path = format!("{}/finalize", object_path(kind, object));
        self.call(Method::PUT, path, None, "application/json", Some(object))
            .await
    }

    /// DELETE of `object` (only that incarnation: its uid is a
    /// precondition), with the given grace period or the object's own.
    pub async fn delete(
        &self,
        kind: Kind,
        object: &Value,
        grace_seconds: Option<i64>,
    ) -> Result<(), ClientError> {
        self.delete_at(object_path(kind, object), object, grace_seconds)
            .await
    }

    /// DELETE of `object` at `path`, for kinds the controllers do not
    /// otherwise handle.
    pub async fn delete_at(
        &self,
        path: String,
        object: &Value,
        grace_seconds: Option<i64>,
    ) -> Result<(), ClientError> {
        let mut options = json!({
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "preconditions": { "uid": object["metadata"]["uid"] },
        });
        if let Some(grace) = grace_seconds {
            options["gracePeriodSeconds"] = json!(grace);
        }
        match self
            .call(
                Method::DELETE,
                path,
                None,
                "application/json",
                Some(&options),
            )
            .await
        {
            Err(error) if error.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// POST `pods/<name>/binding`.
    pub async fn bind(&self, pod: &Value, node: &str) -> Result<(), ClientError> {
        let metadata = &pod["metadata"];
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": { "name": metadata["name"], "namespace": metadata["namespace"], "uid": metadata["uid"] },
            "target": { "apiVersion": "v1", "kind": "Node", "name": node },
        });
        let path = format!("{}/binding", object_path(Kind::Pod, pod));
        self.call(Method::POST, path, None, "application/json", Some(&binding))
            .await
            .map(drop)
    }
}

fn object_path(kind: Kind, object: &Value) -> String {
    kind.path(
        object["metadata"]["namespace"].as_str(),
        object["metadata"]["name"].as_str(),
    )
}

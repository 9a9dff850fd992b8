//! `POST /apis/authentication.k8s.io/v1/tokenreviews`: who a
//! service-account token authenticates, as kube-apiserver's TokenReview
//! answers.

use serde_json::{Value, json};

use super::reply::Reply;
use super::state::Api;
use super::status::ApiError;
use crate::serviceaccount::{Authenticator, ISSUER, TokenError};

/// The path of the TokenReview collection (create only).
pub const PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

impl Api {
    pub(super) async fn review_token(&self, review: Value) -> Result<Reply, ApiError> {
        let token = review["spec"]["token"].as_str().unwrap_or_default();
        if token.is_empty() {
            return Err(ApiError::bad_request(
                "token is required for TokenReview in authentication",
            ));
        }
        let keys = self
            .config
            .service_account_keys
            .clone()
            .ok_or_else(|| ApiError::internal("this server has no service-account key"))?;
        let requested: Vec<&str> = match review["spec"]["audiences"].as_array() {
            Some(audiences) if !audiences.is_empty() => {
                audiences.iter().filter_map(Value::as_str).collect()
            }
            _ => vec![ISSUER],
        };
        let authenticator = Authenticator::new(keys, self.store.clone());
        let status = match authenticator.authenticate(token, &requested).await {
            Ok((identity, audiences)) => json!({
                "authenticated": true,
                "user": {
                    "username": identity.name,
                    "uid": identity.uid,
                    "groups": identity.groups,
                    "extra": identity.extra,
                },
                "audiences": audiences,
            }),
            Err(TokenError::Store(error)) => return Err(ApiError::internal(error.to_string())),
            Err(error) => json!({ "user": {}, "error": error.to_string() }),
        };
        let mut answer = review;
        answer["kind"] = json!("TokenReview");
        answer["apiVersion"] = json!("authentication.k8s.io/v1");
        answer["metadata"]["creationTimestamp"] = Value::Null;
        answer["status"] = status;
        Ok(Reply::Json {
            code: 201,
            body: answer,
            warnings: Vec::new(),
        })
    }
}

//! Routing a request: discovery and OpenAPI documents, or a verb on a
//! resource.

use bytes::Bytes;
use http::Method;

use super::path::{self, Route};
use super::query::Query;
use super::reply::Reply;
use super::request::ApiRequest;
use super::state::Api;
use super::status::ApiError;
use super::{aggregated_discovery, discovery, handlers, openapi, token_review};

impl Api {
    pub async fn handle(&self, request: ApiRequest) -> Reply {
        match self.dispatch(request).await {
            Ok(reply) => reply,
            Err(error) => error.into(),
        }
    }

    async fn dispatch(&self, request: ApiRequest) -> Result<Reply, ApiError> {
        if request.path == token_review::PATH {
            if request.method != Method::POST {
                return Err(ApiError::method_not_allowed(request.method.as_str()));
            }
            return self
                .review_token(super::objects::parse_body(&request.body)?)
                .await;
        }
        let route = path::route(&request.path).ok_or_else(ApiError::no_route)?;
        let target = match route {
            Route::Object(target) => target,
            Route::Discovery(document) => {
                if request.method != Method::GET {
                    return Err(ApiError::method_not_allowed(request.method.as_str()));
                }
                if aggregated_discovery::wanted(request.accept.as_deref())
                    && let Some(body) = aggregated_discovery::document(&document)
                {
                    return Ok(Reply::Serialized {
                        content_type: aggregated_discovery::CONTENT_TYPE,
                        body: Bytes::from(serde_json::to_vec(&body).expect("JSON serializes")),
                    });
                }
                return Ok(Reply::Json {
                    code: 200,
                    body: discovery::document(&document),
                    warnings: Vec::new(),
                });
            }
            Route::Metrics(target) => {
                if request.method != Method::GET {
                    return Err(ApiError::method_not_allowed(request.method.as_str()));
                }
                let query = Query::parse(request.query.as_deref())?;
                return self.metrics(target, &query).await;
            }
            Route::Review { review, namespace } => {
                return self.review(review, namespace.as_deref(), &request);
            }
            Route::OpenApi(path) => {
                if request.method != Method::GET {
                    return Err(ApiError::method_not_allowed(request.method.as_str()));
                }
                let document = match path {
                    None => Some(openapi::index()),
                    Some(path) => openapi::group_version_document(&path),
                };
                return document
                    .map(|body| Reply::Serialized {
                        content_type: "application/json",
                        body,
                    })
                    .ok_or_else(ApiError::no_route);
            }
        };
        let query = Query::parse(request.query.as_deref())?;
        handlers::Handler {
            api: self,
            target,
            query,
            request,
        }
        .run()
        .await
    }
}

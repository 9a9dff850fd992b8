//! What the API answers with.

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use super::status::ApiError;

/// What to send back.
#[derive(Debug)]
pub enum Reply {
    Json {
        code: u16,
        body: Value,
        /// `Warning` headers, e.g. for fields dropped from the object.
        warnings: Vec<String>,
    },
    /// A JSON document already serialized (OpenAPI's are once, for many
    /// requests), with its media type.
    Serialized {
        content_type: &'static str,
        body: Bytes,
    },
    /// A body streamed until the sender is dropped: a watch's
    /// newline-delimited JSON events, a container's log.
    Stream {
        content_type: &'static str,
        receiver: mpsc::Receiver<Bytes>,
    },
}

impl From<ApiError> for Reply {
    fn from(error: ApiError) -> Self {
        Reply::Json {
            code: error.code,
            body: error.status(),
            warnings: Vec::new(),
        }
    }
}

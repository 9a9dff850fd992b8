//! A request as the API layer sees it.

use bytes::Bytes;
use http::Method;

use crate::user::User;

/// A request as the API layer sees it: the body already read (watches have
/// none).
#[derive(Debug)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub content_type: Option<String>,
    /// The `Accept` header: kubectl asks for server-side Tables.
    pub accept: Option<String>,
    /// The `User-Agent`: its program name is the field manager of writes
    /// that name none.
    pub user_agent: Option<String>,
    pub body: Bytes,
    /// Who asks; `None` for the server's own calls (controllers, leases).
    pub user: Option<User>,
}

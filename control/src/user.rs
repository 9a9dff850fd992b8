//! Who made a request, as authentication found them (Kubernetes'
//! `user.Info`): the server authenticates, the API records it where a kind
//! keeps its requester (a CertificateSigningRequest's `spec.username`).

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

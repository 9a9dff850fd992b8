//! The Kubernetes version this server reports.

/// The version `/version` and the OpenAPI documents report: the Kubernetes
/// API level served.
pub const GIT_VERSION: &str = "v1.37.0-skiff";

//! skiff's own Service annotations: `skiff.io/outlier-detection` must hold
//! a value the agents can read (the parser is theirs), so a typo is refused
//! here instead of silently leaving passive health off.
use k8s_openapi::api::core::v1::Service;
use proxy_common::outlier_annotation::{self, ANNOTATION};

use crate::validation::FieldError;

pub(super) fn validate_annotations(service: &Service) -> Vec<FieldError> {
    let value = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(ANNOTATION));
    match value.map(|value| (value, outlier_annotation::parse(value))) {
        Some((value, Err(error))) => vec![FieldError::invalid(
            format!("metadata.annotations[{ANNOTATION}]"),
            value,
            error.to_string(),
        )],
        _ => Vec::new(),
    }
}

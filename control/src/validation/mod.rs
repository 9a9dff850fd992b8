//! Kubernetes' validation rules and defaults for the objects skiff-control
//! stores, with errors worded like kube-apiserver's so that `kubectl` users
//! see the messages they know. The rules of one kind live with the kind
//! (`crate::kinds`); these are the ones every kind shares.

mod field;
mod meta;
mod names;
mod status;
mod unknown;

pub use field::{
    BadValue, ErrorKind, FieldError, Rendered, child, go_quote, go_string_slice, index,
};
pub use meta::{
    NameRule, validate_annotations, validate_label_selector, validate_labels, validate_object_meta,
    validate_object_meta_update,
};
pub use names::{
    inclusive_range_error, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain,
    is_qualified_name, is_valid_label_value, is_valid_path_segment_name, is_valid_port_name,
    is_valid_port_num, is_wildcard_dns1123_subdomain, random_suffix,
};
pub use status::{Cause, Details, InvalidStatus, invalid_status};
pub use unknown::{UnknownField, strict_decoding_message, strip_unknown_fields};

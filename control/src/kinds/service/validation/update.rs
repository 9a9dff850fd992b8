//! What may not change when a Service is updated.

use k8s_openapi::api::core::v1::{Service, ServiceSpec};

use crate::validation::{FieldError, Rendered, child, go_string_slice, index};

/// A primary ClusterIP stays for the Service's lifetime, except when the
/// Service becomes or stops being an ExternalName one (which has none), or
/// stays headless.
pub(super) fn cluster_ips_unchanged(new: &Service, old: &Service) -> Vec<FieldError> {
    let empty = ServiceSpec::default();
    let (new_spec, old_spec) = (
        new.spec.as_ref().unwrap_or(&empty),
        old.spec.as_ref().unwrap_or(&empty),
    );
    let external_name = |s: &ServiceSpec| s.type_.as_deref() == Some("ExternalName");
    if external_name(new_spec) || external_name(old_spec) {
        return Vec::new();
    }
    let new_ips = new_spec.cluster_ips.as_deref().unwrap_or_default();
    let old_ips = old_spec.cluster_ips.as_deref().unwrap_or_default();
    let headless = |ips: &[String]| ips.first().is_some_and(|ip| ip == "None");
    if headless(new_ips) && headless(old_ips) {
        return Vec::new();
    }
    let path = child("spec", "clusterIPs");
    let rendered = || Rendered(go_string_slice(new_ips));
    let mut errs = Vec::new();
    if new_ips.len() == old_ips.len() {
        for (i, (new_ip, old_ip)) in new_ips.iter().zip(old_ips).enumerate() {
            if new_ip != old_ip {
                errs.push(FieldError::invalid(
                    index(&path, i),
                    rendered(),
                    "may not change once set",
                ));
            }
        }
    } else if let (Some(new_ip), Some(old_ip)) = (new_ips.first(), old_ips.first())
        && new_ip != old_ip
    {
        errs.push(FieldError::invalid(
            index(&path, 0),
            rendered(),
            "may not change once set",
        ));
    }
    errs
}

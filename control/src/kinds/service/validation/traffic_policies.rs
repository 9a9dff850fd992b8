//! `externalTrafficPolicy`, `internalTrafficPolicy`, the health check
//! nodePort that goes with a Local external policy, and
//! `trafficDistribution`.

use k8s_openapi::api::core::v1::ServiceSpec;

use crate::validation::{FieldError, child, inclusive_range_error};

const TRAFFIC_POLICIES: [&str; 2] = ["Cluster", "Local"];
/// In the API's order (its message lists them so): PreferClose is the
/// older name of PreferSameZone.
const TRAFFIC_DISTRIBUTIONS: [&str; 3] = ["PreferClose", "PreferSameZone", "PreferSameNode"];

pub(super) fn validate_traffic_policies(ty: &str, spec: &ServiceSpec) -> Vec<FieldError> {
    let sp = "spec";
    let mut errs = Vec::new();
    let external_ips = spec
        .external_ips
        .as_ref()
        .is_some_and(|ips| !ips.is_empty());
    let externally_accessible =
        matches!(ty, "NodePort" | "LoadBalancer") || (ty == "ClusterIP" && external_ips);
    let etp_path = child(sp, "externalTrafficPolicy");
    let etp = spec.external_traffic_policy.as_deref().unwrap_or("");
    if !externally_accessible {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                &etp_path,
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required(&etp_path, ""));
    } else if !TRAFFIC_POLICIES.contains(&etp) {
        errs.push(FieldError::not_supported(&etp_path, etp, &TRAFFIC_POLICIES));
    }

    // The health check port is allocated by the registry when needed, so only
    // a value set where it does not belong, or out of range, is rejected here.
    let hc_path = child(sp, "healthCheckNodePort");
    if let Some(hc) = spec.health_check_node_port.filter(|p| *p != 0) {
        if ty != "LoadBalancer" || etp != "Local" {
            errs.push(FieldError::invalid(
                &hc_path,
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        } else if !(1..=65535).contains(&hc) {
            errs.push(FieldError::invalid(
                &hc_path,
                hc,
                inclusive_range_error(1, 65535),
            ));
        }
    }

    let itp_path = child(sp, "internalTrafficPolicy");
    match spec.internal_traffic_policy.as_deref() {
        None if matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer") => {
            errs.push(FieldError::required(&itp_path, "must be specified"));
        }
        Some(itp) if !TRAFFIC_POLICIES.contains(&itp) => {
            errs.push(FieldError::not_supported(&itp_path, itp, &TRAFFIC_POLICIES));
        }
        _ => {}
    }
    errs
}

/// `trafficDistribution`, when set, is one of the values kube-apiserver
/// 1.35 accepts.
pub(super) fn validate_traffic_distribution(spec: &ServiceSpec) -> Vec<FieldError> {
    match spec.traffic_distribution.as_deref() {
        Some(value) if !TRAFFIC_DISTRIBUTIONS.contains(&value) => vec![FieldError::not_supported(
            child("spec", "trafficDistribution"),
            value,
            &TRAFFIC_DISTRIBUTIONS,
        )],
        _ => Vec::new(),
    }
}

//! The Service `type` and the rules that depend on it: what NodePort and
//! LoadBalancer services may expose, ExternalName's CNAME, and the
//! LoadBalancer-only fields.

use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

use super::addresses::{INVALID_CIDR, is_valid_cidr};
use crate::validation::{FieldError, child, index, is_dns1123_subdomain};

const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
/// Load balancers must not expose the kubelet's port (upstream's workaround
/// for clouds that open firewalls too widely).
const KUBELET_PORT: i32 = 10250;

pub(super) fn validate_type(ty: &str) -> Vec<FieldError> {
    let sp = "spec";
    let mut errs = Vec::new();
    match ty {
        "" => errs.push(FieldError::required(child(sp, "type"), "")),
        t if !SERVICE_TYPES.contains(&t) => {
            errs.push(FieldError::not_supported(
                child(sp, "type"),
                t,
                &SERVICE_TYPES,
            ));
        }
        _ => {}
    }
    errs
}

/// NodePort and LoadBalancer services need a ClusterIP, and a load balancer
/// may not take the kubelet's port.
pub(super) fn validate_exposure(
    ty: &str,
    headless: bool,
    ports: &[ServicePort],
    ports_path: &str,
) -> Vec<FieldError> {
    let sp = "spec";
    let mut errs = Vec::new();
    match ty {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
            index(&child(sp, "clusterIPs"), 0),
            "None",
            format!("may not be set to 'None' for {ty} services"),
        )),
        _ => {}
    }
    if ty == "LoadBalancer" {
        for (i, port) in ports.iter().enumerate() {
            if port.port == KUBELET_PORT {
                errs.push(FieldError::invalid(
                    index(ports_path, i),
                    port.port,
                    format!(
                        "may not expose port {KUBELET_PORT} externally since it is used by kubelet"
                    ),
                ));
            }
        }
    }
    errs
}

pub(super) fn validate_external_name(spec: &ServiceSpec) -> Vec<FieldError> {
    let sp = "spec";
    let mut errs = Vec::new();
    if spec.cluster_ips.as_ref().is_some_and(|ips| !ips.is_empty()) {
        errs.push(FieldError::forbidden(
            child(sp, "clusterIPs"),
            "may not be set for ExternalName services",
        ));
    }
    if spec.ip_families.as_ref().is_some_and(|f| !f.is_empty()) {
        errs.push(FieldError::forbidden(
            child(sp, "ipFamilies"),
            "may not be set for ExternalName services",
        ));
    }
    if spec.ip_family_policy.is_some() {
        errs.push(FieldError::forbidden(
            child(sp, "ipFamilyPolicy"),
            "may not be set for ExternalName services",
        ));
    }
    // A CNAME may end in a dot to say it is fully qualified.
    let name = spec.external_name.as_deref().unwrap_or("");
    let cname = name.strip_suffix('.').unwrap_or(name);
    if cname.is_empty() {
        errs.push(FieldError::required(child(sp, "externalName"), ""));
    } else {
        for msg in is_dns1123_subdomain(cname) {
            errs.push(FieldError::invalid(child(sp, "externalName"), cname, msg));
        }
    }
    errs
}

pub(super) fn validate_load_balancer_fields(ty: &str, spec: &ServiceSpec) -> Vec<FieldError> {
    let sp = "spec";
    let mut errs = Vec::new();
    let ranges = spec
        .load_balancer_source_ranges
        .as_deref()
        .unwrap_or_default();
    if !ranges.is_empty() {
        let path = child(sp, "loadBalancerSourceRanges");
        if ty != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                &path,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, range) in ranges.iter().enumerate() {
            // Historically these may be space-padded.
            let range = range.trim();
            if !is_valid_cidr(range) {
                errs.push(FieldError::invalid(index(&path, i), range, INVALID_CIDR));
            }
        }
    }
    let allocate_path = child(sp, "allocateLoadBalancerNodePorts");
    match (ty, spec.allocate_load_balancer_node_ports) {
        ("LoadBalancer", None) => errs.push(FieldError::required(allocate_path, "")),
        ("LoadBalancer", Some(_)) | (_, None) => {}
        (_, Some(_)) => errs.push(FieldError::forbidden(
            allocate_path,
            "may only be used when `type` is 'LoadBalancer'",
        )),
    }
    errs
}

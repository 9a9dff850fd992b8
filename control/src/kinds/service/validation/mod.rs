//! Service defaulting and validation: kube-apiserver's `SetDefaults_Service`
//! and `ValidateService`.
//!
//! [`validate_service`] runs the rules in upstream's order, so the errors
//! come out in the same order as kube-apiserver's.

mod addresses;
mod annotations;
mod cluster_ips;
mod defaults;
mod options;
mod ports;
mod session_affinity;
mod traffic_policies;
mod types;
mod update;

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Service, ServiceSpec};

pub(super) use cluster_ips::validate_cluster_ips as validate_cluster_ips_related;
pub use defaults::{default_service, sync_cluster_ips};
pub use options::ServiceOptions;

use crate::validation::{FieldError, child, index, validate_labels};

/// Validates a (defaulted) Service's spec for create, and skiff's own
/// annotations (the rest of its metadata is checked for every kind,
/// `api::objects`). An empty result means valid.
pub fn validate_service(service: &Service, opts: &ServiceOptions) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = ServiceSpec::default();
    let spec = service.spec.as_ref().unwrap_or(&empty);
    let sp = "spec";
    let ty = spec.type_.as_deref().unwrap_or("");
    let ports = spec.ports.as_deref().unwrap_or_default();
    let cluster_ips = spec.cluster_ips.as_deref().unwrap_or_default();
    let headless = cluster_ips.first().is_some_and(|ip| ip == "None");
    let ports_path = child(sp, "ports");

    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(&ports_path, ""));
    }
    errs.extend(types::validate_exposure(ty, headless, ports, &ports_path));
    if ty == "ExternalName" {
        errs.extend(types::validate_external_name(spec));
    }

    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        errs.extend(ports::validate_port(
            port,
            ports.len() > 1,
            &mut names,
            &index(&ports_path, i),
        ));
    }

    if let Some(selector) = &spec.selector {
        errs.extend(validate_labels(selector, &child(sp, "selector")));
    }

    errs.extend(session_affinity::validate_session_affinity(spec));
    if ty != "ExternalName" {
        errs.extend(cluster_ips::validate_cluster_ips(spec));
    }
    errs.extend(addresses::validate_external_ips(spec));
    errs.extend(types::validate_type(ty));
    errs.extend(ports::validate_node_ports(ty, ports, opts, &ports_path));
    errs.extend(ports::duplicate_ports(ports, &ports_path));
    errs.extend(types::validate_load_balancer_fields(ty, spec));
    errs.extend(traffic_policies::validate_traffic_policies(ty, spec));
    errs.extend(traffic_policies::validate_traffic_distribution(spec));
    errs.extend(annotations::validate_annotations(service));
    errs
}

/// Validates an update of `old` to (defaulted) `new`: what may not change
/// in the spec, then everything [`validate_service`] checks (the metadata
/// is checked for every kind, `api::objects`).
pub fn validate_service_update(
    new: &Service,
    old: &Service,
    opts: &ServiceOptions,
) -> Vec<FieldError> {
    let mut errs = update::cluster_ips_unchanged(new, old);
    errs.extend(validate_service(new, opts));
    errs
}

#[cfg(test)]
mod tests;

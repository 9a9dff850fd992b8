//! A Service's ports: each port's fields, nodePorts, and duplicates.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::ServicePort;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::options::ServiceOptions;
use crate::validation::{
    FieldError, Rendered, child, go_quote, index, is_dns1123_label, is_qualified_name,
    is_valid_port_name, is_valid_port_num,
};

const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];

pub(super) fn validate_port(
    port: &ServicePort,
    require_name: bool,
    names: &mut HashSet<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match port.name.as_deref().filter(|n| !n.is_empty()) {
        None if require_name => errs.push(FieldError::required(child(path, "name"), "")),
        None => {}
        Some(name) => {
            for msg in is_dns1123_label(name) {
                errs.push(FieldError::invalid(child(path, "name"), name, msg));
            }
            if !names.insert(name.to_owned()) {
                errs.push(FieldError::duplicate(child(path, "name"), name));
            }
        }
    }
    for msg in is_valid_port_num(port.port.into()) {
        errs.push(FieldError::invalid(child(path, "port"), port.port, msg));
    }
    match port.protocol.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(child(path, "protocol"), "")),
        p if !PROTOCOLS.contains(&p) => {
            errs.push(FieldError::not_supported(
                child(path, "protocol"),
                p,
                &PROTOCOLS,
            ));
        }
        _ => {}
    }
    let target_path = child(path, "targetPort");
    match &port.target_port {
        Some(IntOrString::Int(n)) => {
            for msg in is_valid_port_num((*n).into()) {
                errs.push(FieldError::invalid(&target_path, *n, msg));
            }
        }
        Some(IntOrString::String(name)) => {
            for msg in is_valid_port_name(name) {
                errs.push(FieldError::invalid(&target_path, name, msg));
            }
        }
        // Defaulting sets it to `port`; absent means defaulting was skipped.
        None => errs.push(FieldError::required(&target_path, "")),
    }
    if let Some(app_protocol) = &port.app_protocol {
        for msg in is_qualified_name(app_protocol) {
            errs.push(FieldError::invalid(
                child(path, "appProtocol"),
                app_protocol,
                msg,
            ));
        }
    }
    errs
}

pub(super) fn validate_node_ports(
    ty: &str,
    ports: &[ServicePort],
    opts: &ServiceOptions,
    ports_path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let range = &opts.node_port_range;
    let mut seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let Some(node_port) = port.node_port.filter(|n| *n != 0) else {
            continue;
        };
        let path = child(&index(ports_path, i), "nodePort");
        match ty {
            "ClusterIP" => errs.push(FieldError::forbidden(
                &path,
                "may not be used when `type` is 'ClusterIP'",
            )),
            "NodePort" | "LoadBalancer" => {
                let in_range = u16::try_from(node_port).is_ok_and(|n| range.contains(&n));
                if !in_range {
                    errs.push(FieldError::invalid(
                        &path,
                        node_port,
                        format!(
                            "provided port is not in the valid range. The range of valid ports is {}-{}",
                            range.start(),
                            range.end()
                        ),
                    ));
                }
            }
            _ => {}
        }
        // The same nodePort may serve TCP and UDP, not twice one protocol.
        if !seen.insert((port.protocol.as_deref(), node_port)) {
            errs.push(FieldError::duplicate(&path, node_port));
        }
    }
    errs
}

/// Two ports with the same number and protocol. The value is rendered the way
/// kube-apiserver prints its internal `ServicePort` key.
pub(super) fn duplicate_ports(ports: &[ServicePort], ports_path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().unwrap_or("");
        if !seen.insert((protocol, port.port)) {
            let key = format!(
                "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                go_quote(protocol),
                port.port
            );
            errs.push(FieldError::duplicate(index(ports_path, i), Rendered(key)));
        }
    }
    errs
}

//! Service defaulting and validation: kube-apiserver's `SetDefaults_Service`
//! and `ValidateService` for the single-stack IPv4 clusters skiff runs.

use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value};

use crate::validation::{
    FieldError, NameRule, Rendered, child, go_quote, go_string_slice, inclusive_range_error, index,
    is_dns1123_label, is_dns1123_subdomain, is_qualified_name, is_valid_port_name,
    is_valid_port_num, validate_labels, validate_object_meta, validate_object_meta_update,
};

const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const SESSION_AFFINITIES: [&str; 2] = ["ClientIP", "None"];
const TRAFFIC_POLICIES: [&str; 2] = ["Cluster", "Local"];
const IP_FAMILIES: [&str; 2] = ["IPv4", "IPv6"];
const IP_FAMILY_POLICIES: [&str; 3] = ["PreferDualStack", "RequireDualStack", "SingleStack"];
/// Load balancers must not expose the kubelet's port (upstream's workaround
/// for clouds that open firewalls too widely).
const KUBELET_PORT: i32 = 10250;
const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;
const DEFAULT_CLIENT_IP_AFFINITY_SECONDS: i64 = 10800;
const INVALID_IP: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const INVALID_CIDR: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

/// Cluster configuration the rules depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOptions {
    /// `--service-node-port-range`; requested nodePorts must lie in it.
    pub node_port_range: RangeInclusive<u16>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            node_port_range: 30000..=32767,
        }
    }
}

fn is_unset(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key).is_none_or(Value::is_null)
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    if is_unset(map, key) {
        map.insert(key.to_owned(), value.into());
    }
}

/// The object at `map[key]`, created (replacing `null`) if missing. `None` if
/// it holds something else, which decoding will reject later.
fn object_entry<'m>(
    map: &'m mut Map<String, Value>,
    key: &str,
) -> Option<&'m mut Map<String, Value>> {
    if is_unset(map, key) {
        map.insert(key.to_owned(), Value::Object(Map::new()));
    }
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// Fills in what kube-apiserver defaults on a Service before validation, on
/// the raw JSON so that defaulted fields are stored and returned like
/// upstream's. Also keeps `clusterIP` and `clusterIPs` in sync, as the
/// registry does on create.
pub fn default_service(service: &mut Value) {
    let Some(spec) = service
        .as_object_mut()
        .and_then(|o| object_entry(o, "spec"))
    else {
        return;
    };
    set_default(spec, "type", "ClusterIP");
    set_default(spec, "sessionAffinity", "None");
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();

    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP")
        && let Some(config) = object_entry(spec, "sessionAffinityConfig")
        && let Some(client_ip) = object_entry(config, "clientIP")
    {
        set_default(
            client_ip,
            "timeoutSeconds",
            DEFAULT_CLIENT_IP_AFFINITY_SECONDS,
        );
    }

    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(port, "protocol", "TCP");
            let target_unset = match port.get("targetPort") {
                None | Some(Value::Null) => true,
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s.is_empty(),
                Some(_) => false,
            };
            if target_unset && let Some(p) = port.get("port").cloned() {
                port.insert("targetPort".to_owned(), p);
            }
        }
    }

    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
        set_default(spec, "externalTrafficPolicy", "Cluster");
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", true);
    }
    if ty != "ExternalName" {
        set_default(spec, "internalTrafficPolicy", "Cluster");
        let no_families = spec
            .get("ipFamilies")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if no_families {
            spec.insert("ipFamilies".to_owned(), Value::from(vec!["IPv4"]));
        }
        set_default(spec, "ipFamilyPolicy", "SingleStack");
    }

    let cluster_ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty())
        .map(str::to_owned);
    let first_cluster_ip = spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .and_then(|ips| ips.first())
        .cloned();
    match (cluster_ip, first_cluster_ip) {
        (Some(ip), None) => {
            spec.insert("clusterIPs".to_owned(), Value::from(vec![ip]));
        }
        (None, Some(first)) => {
            spec.insert("clusterIP".to_owned(), first);
        }
        _ => {}
    }
}

/// Validates a (defaulted) Service for create. An empty result means valid.
pub fn validate_service(service: &Service, opts: &ServiceOptions) -> Vec<FieldError> {
    let mut errs = validate_object_meta(&service.metadata, true, NameRule::Dns1035Label);
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
                    index(&ports_path, i),
                    port.port,
                    format!(
                        "may not expose port {KUBELET_PORT} externally since it is used by kubelet"
                    ),
                ));
            }
        }
    }
    if ty == "ExternalName" {
        errs.extend(validate_external_name(spec));
    }

    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        errs.extend(validate_port(
            port,
            ports.len() > 1,
            &mut names,
            &index(&ports_path, i),
        ));
    }

    if let Some(selector) = &spec.selector {
        errs.extend(validate_labels(selector, &child(sp, "selector")));
    }

    errs.extend(validate_session_affinity(spec));
    if ty != "ExternalName" {
        errs.extend(validate_cluster_ips(spec));
    }

    let external_ips_path = child(sp, "externalIPs");
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        errs.extend(validate_non_special_ip(ip, &index(&external_ips_path, i)));
    }

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

    errs.extend(validate_node_ports(ty, ports, opts, &ports_path));
    errs.extend(duplicate_ports(ports, &ports_path));
    errs.extend(validate_load_balancer_fields(ty, spec));
    errs.extend(validate_traffic_policies(ty, spec));
    errs
}

/// Validates an update of `old` to (defaulted) `new`: what may not change,
/// then everything [`validate_service`] checks.
pub fn validate_service_update(
    new: &Service,
    old: &Service,
    opts: &ServiceOptions,
) -> Vec<FieldError> {
    let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
    errs.extend(cluster_ips_unchanged(new, old));
    errs.extend(validate_service(new, opts));
    errs
}

/// A primary ClusterIP stays for the Service's lifetime, except when the
/// Service becomes or stops being an ExternalName one (which has none), or
/// stays headless.
fn cluster_ips_unchanged(new: &Service, old: &Service) -> Vec<FieldError> {
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

fn validate_external_name(spec: &ServiceSpec) -> Vec<FieldError> {
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

fn validate_port(
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

fn validate_session_affinity(spec: &ServiceSpec) -> Vec<FieldError> {
    let sp = "spec";
    let config_path = child(sp, "sessionAffinityConfig");
    let mut errs = Vec::new();
    match spec.session_affinity.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(child(sp, "sessionAffinity"), "")),
        "ClientIP" => {
            let when = "when session affinity type is ClientIP";
            let client_ip_path = child(&config_path, "clientIP");
            let timeout_path = child(&client_ip_path, "timeoutSeconds");
            match &spec.session_affinity_config {
                None => errs.push(FieldError::required(&config_path, when)),
                Some(config) => match &config.client_ip {
                    None => errs.push(FieldError::required(&client_ip_path, when)),
                    Some(client_ip) => match client_ip.timeout_seconds {
                        None => errs.push(FieldError::required(&timeout_path, when)),
                        Some(t) if t <= 0 || i64::from(t) > MAX_CLIENT_IP_AFFINITY_SECONDS => {
                            errs.push(FieldError::invalid(
                                &timeout_path,
                                t,
                                format!(
                                    "must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"
                                ),
                            ));
                        }
                        Some(_) => {}
                    },
                },
            }
        }
        "None" => {
            if spec.session_affinity_config.is_some() {
                errs.push(FieldError::forbidden(
                    &config_path,
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            child(sp, "sessionAffinity"),
            other,
            &SESSION_AFFINITIES,
        )),
    }
    errs
}

fn ip_family(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

/// `clusterIP`, `clusterIPs`, `ipFamilies` and `ipFamilyPolicy` together.
/// skiff's clusters are single-stack IPv4, so IPv6 is refused.
fn validate_cluster_ips(spec: &ServiceSpec) -> Vec<FieldError> {
    let sp = "spec";
    let ips_path = child(sp, "clusterIPs");
    let families_path = child(sp, "ipFamilies");
    let mut errs = Vec::new();
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
    let cluster_ips = spec.cluster_ips.as_deref().unwrap_or_default();
    let families = spec.ip_families.as_deref().unwrap_or_default();
    let rendered_ips = || Rendered(go_string_slice(cluster_ips));

    match cluster_ips.first() {
        None if !cluster_ip.is_empty() => errs.push(FieldError::required(&ips_path, "")),
        Some(_) if cluster_ip.is_empty() => errs.push(FieldError::invalid(
            &ips_path,
            rendered_ips(),
            "must be empty when `clusterIP` is not specified",
        )),
        Some(first) if first != cluster_ip => errs.push(FieldError::invalid(
            &ips_path,
            rendered_ips(),
            "first value must match `clusterIP`",
        )),
        _ => {}
    }

    let mut seen = HashSet::new();
    for (i, family) in families.iter().enumerate() {
        let path = index(&families_path, i);
        if !IP_FAMILIES.contains(&family.as_str()) {
            errs.push(FieldError::not_supported(&path, family, &IP_FAMILIES));
        } else if family == "IPv6" {
            errs.push(FieldError::invalid(
                &path,
                family,
                "not configured on this cluster",
            ));
        }
        if !seen.insert(family) {
            errs.push(FieldError::duplicate(&path, family));
        }
    }

    if let Some(policy) = spec.ip_family_policy.as_deref()
        && !IP_FAMILY_POLICIES.contains(&policy)
    {
        errs.push(FieldError::not_supported(
            child(sp, "ipFamilyPolicy"),
            policy,
            &IP_FAMILY_POLICIES,
        ));
    }

    let mut seen_families = HashSet::new();
    for (i, ip) in cluster_ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if cluster_ips.len() > 1 {
                errs.push(FieldError::invalid(
                    &ips_path,
                    rendered_ips(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        let path = index(&ips_path, i);
        let Ok(addr) = ip.parse::<IpAddr>() else {
            errs.push(FieldError::invalid(&path, ip, INVALID_IP));
            continue;
        };
        let family = ip_family(addr);
        if let Some(expected) = families.get(i)
            && expected != family
        {
            errs.push(FieldError::invalid(
                &path,
                ip,
                format!("expected an {expected} value as indicated by `ipFamilies[{i}]`"),
            ));
        }
        if !seen_families.insert(family) {
            errs.push(FieldError::invalid(
                &ips_path,
                rendered_ips(),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    errs
}

fn validate_non_special_ip(ip: &str, path: &str) -> Vec<FieldError> {
    let Ok(addr) = ip.parse::<IpAddr>() else {
        return vec![FieldError::invalid(path, ip, INVALID_IP)];
    };
    let reason = if addr.is_unspecified() {
        Some("may not be unspecified (0.0.0.0, ::)")
    } else if addr.is_loopback() {
        Some("may not be in the loopback range (127.0.0.0/8, ::1/128)")
    } else if is_link_local(addr) {
        Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
    } else if addr.is_multicast() {
        Some("may not be in the multicast range (224.0.0.0/4, ff00::/8)")
    } else {
        None
    };
    reason
        .map(|r| FieldError::invalid(path, ip, r))
        .into_iter()
        .collect()
}

fn is_link_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn is_valid_cidr(value: &str) -> bool {
    let Some((addr, prefix)) = value.split_once('/') else {
        return false;
    };
    let (Ok(addr), Ok(prefix)) = (addr.parse::<IpAddr>(), prefix.parse::<u8>()) else {
        return false;
    };
    match addr {
        IpAddr::V4(_) => prefix <= 32,
        IpAddr::V6(_) => prefix <= 128,
    }
}

fn validate_node_ports(
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
fn duplicate_ports(ports: &[ServicePort], ports_path: &str) -> Vec<FieldError> {
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

fn validate_load_balancer_fields(ty: &str, spec: &ServiceSpec) -> Vec<FieldError> {
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

fn validate_traffic_policies(ty: &str, spec: &ServiceSpec) -> Vec<FieldError> {
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

#[cfg(test)]
mod tests;

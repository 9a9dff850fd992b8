//! A Service's virtual IPs and their IP families.

use std::collections::HashSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::ServiceSpec;

use super::addresses::{INVALID_IP, ip_family};
use crate::validation::{FieldError, Rendered, child, go_string_slice, index};

const IP_FAMILIES: [&str; 2] = ["IPv4", "IPv6"];
const IP_FAMILY_POLICIES: [&str; 3] = ["PreferDualStack", "RequireDualStack", "SingleStack"];

/// `clusterIP`, `clusterIPs`, `ipFamilies` and `ipFamilyPolicy` together
/// (kube-apiserver's `ValidateServiceClusterIPsRelatedFields`); whether the
/// cluster has the families is checked when they are completed
/// (`ip_families`).
pub(crate) fn validate_cluster_ips(spec: &ServiceSpec) -> Vec<FieldError> {
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

    let mut addrs = Vec::new();
    let mut invalid_ips = false;
    for (i, ip) in cluster_ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if cluster_ips.len() > 1 {
                invalid_ips = true;
                errs.push(FieldError::invalid(
                    &ips_path,
                    rendered_ips(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        match ip.parse::<IpAddr>() {
            Ok(addr) => addrs.push(addr),
            Err(_) => {
                invalid_ips = true;
                errs.push(FieldError::invalid(index(&ips_path, i), ip, INVALID_IP));
            }
        }
    }
    if cluster_ips.len() > 2 {
        errs.push(FieldError::invalid(
            &ips_path,
            rendered_ips(),
            "may only hold up to 2 values",
        ));
    }
    // Bad IPs would skew what follows.
    if invalid_ips {
        return errs;
    }
    let distinct: HashSet<&str> = addrs.iter().map(|addr| ip_family(*addr)).collect();
    if cluster_ips.len() > 1 && distinct.len() < 2 {
        errs.push(FieldError::invalid(
            &ips_path,
            rendered_ips(),
            "may specify no more than one IP for each IP family",
        ));
    }
    let headless = cluster_ips.len() == 1 && cluster_ips[0] == "None";
    if !headless {
        for (i, (ip, expected)) in cluster_ips.iter().zip(families).enumerate() {
            let Ok(addr) = ip.parse::<IpAddr>() else {
                continue;
            };
            if IP_FAMILIES.contains(&expected.as_str()) && ip_family(addr) != expected {
                errs.push(FieldError::invalid(
                    index(&ips_path, i),
                    ip,
                    format!("expected an {expected} value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    errs
}

//! `ipFamilyPolicy`, `ipFamilies` and `clusterIPs` completed from the
//! cluster's service ranges, as kube-apiserver's Service registry does
//! before validation (`initIPFamilyFields`): the policy defaulted, families
//! inferred from requested IPs, the secondary family added for dual-stack,
//! and upgrades and downgrades checked.

use serde_json::{Value, json};

use super::fields::service_type;
use super::validation::validate_cluster_ips_related;
use crate::alloc::IpFamily;
use crate::validation::{FieldError, Rendered, child, go_string_slice, index};

const SINGLE_STACK: &str = "SingleStack";
const PREFER_DUAL_STACK: &str = "PreferDualStack";
const REQUIRE_DUAL_STACK: &str = "RequireDualStack";

/// Completes `service`'s IP family fields for a cluster whose service
/// ranges are of `configured` families (the primary first). `old` is the
/// stored Service on an update. The errors are kube-apiserver's.
pub fn init_ip_family_fields(
    configured: &[IpFamily],
    old: Option<&Value>,
    service: &mut Value,
) -> Result<(), Vec<FieldError>> {
    // A spec that is no object is refused by decoding.
    if !service["spec"].is_object()
        || service_type(service) == "ExternalName"
        || same_prefer_dual_stack(old, service)
    {
        return Ok(());
    }
    let headless_selectorless = text(service, "clusterIP") == Some("None")
        && service["spec"]["selector"]
            .as_object()
            .is_none_or(|selector| selector.is_empty());
    if text(service, "ipFamilyPolicy").is_none() {
        let policy = match old.and_then(|old| text(old, "ipFamilyPolicy")) {
            Some(policy) => policy,
            None if headless_selectorless => REQUIRE_DUAL_STACK,
            None => SINGLE_STACK,
        };
        service["spec"]["ipFamilyPolicy"] = json!(policy);
    }
    let errs = decoded_spec_errors(service);
    if !errs.is_empty() {
        return Err(errs);
    }

    let policy = text(service, "ipFamilyPolicy")
        .unwrap_or_default()
        .to_owned();
    let policy_path = child("spec", "ipFamilyPolicy");
    let mut errs = Vec::new();
    if let Some(old) = old {
        if policy == SINGLE_STACK {
            // Same values and SingleStack: the client means to downgrade.
            for field in ["clusterIPs", "ipFamilies"] {
                if service["spec"][field] == old["spec"][field]
                    && let Some(values) = service["spec"][field].as_array_mut()
                {
                    values.truncate(1);
                }
            }
        } else {
            if reduced(old, service, "clusterIPs") {
                errs.push(FieldError::invalid(
                    &policy_path,
                    policy.as_str(),
                    "must be 'SingleStack' to release the secondary cluster IP",
                ));
            }
            if reduced(old, service, "ipFamilies") {
                errs.push(FieldError::invalid(
                    &policy_path,
                    policy.as_str(),
                    "must be 'SingleStack' to release the secondary IP family",
                ));
            }
        }
    }
    if policy == SINGLE_STACK {
        if strings(service, "clusterIPs").len() == 2 {
            errs.push(FieldError::invalid(
                &policy_path,
                policy.as_str(),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if strings(service, "ipFamilies").len() == 2 {
            errs.push(FieldError::invalid(
                &policy_path,
                policy.as_str(),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }

    let cluster_ips = strings(service, "clusterIPs");
    let mut families = strings(service, "ipFamilies");
    for (i, ip) in cluster_ips.iter().enumerate() {
        let Ok(ip) = ip.parse() else {
            break;
        };
        let family = IpFamily::of(ip);
        if i < families.len() {
            continue;
        }
        if configured.contains(&family) {
            families.push(family.as_str().to_owned());
        } else {
            errs.push(FieldError::invalid(
                index(&child("spec", "clusterIPs"), i),
                Rendered(go_string_slice(&cluster_ips)),
                format!("{family} is not configured on this cluster"),
            ));
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }

    let default = configured[0];
    if headless_selectorless {
        if families.is_empty() {
            families.push(default.as_str().to_owned());
        }
        if families.len() < 2 && policy != SINGLE_STACK {
            families.push(other_family(&families[0]).to_owned());
        }
        service["spec"]["ipFamilies"] = json!(families);
        return Ok(());
    }

    if policy == REQUIRE_DUAL_STACK && configured.len() < 2 {
        errs.push(FieldError::invalid(
            &policy_path,
            policy.as_str(),
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, family) in families.iter().enumerate() {
        if !IpFamily::parse(family).is_some_and(|family| configured.contains(&family)) {
            errs.push(FieldError::invalid(
                index(&child("spec", "ipFamilies"), i),
                family.as_str(),
                "not configured on this cluster",
            ));
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    if families.is_empty() {
        families.push(default.as_str().to_owned());
    }
    if policy != SINGLE_STACK && families.len() == 1 && configured.len() == 2 {
        families.push(other_family(&families[0]).to_owned());
    }
    service["spec"]["ipFamilies"] = json!(families);
    Ok(())
}

/// kube-apiserver's loose check before it completes anything: the syntax
/// of the fields, on the decoded spec.
fn decoded_spec_errors(service: &Value) -> Vec<FieldError> {
    match serde_json::from_value(service["spec"].clone()) {
        Ok(spec) => validate_cluster_ips_related(&spec),
        // Decoding is refused with its own message by validation.
        Err(_) => Vec::new(),
    }
}

/// A PreferDualStack Service whose IPs and families did not change stays
/// as it is, also when the cluster became or stopped being dual-stack.
fn same_prefer_dual_stack(old: Option<&Value>, service: &Value) -> bool {
    let Some(old) = old else {
        return false;
    };
    let policy = |s: &Value| text(s, "ipFamilyPolicy").map(str::to_owned);
    policy(service).as_deref() == Some(PREFER_DUAL_STACK)
        && policy(old).as_deref() == Some(PREFER_DUAL_STACK)
        && service_type(old) == service_type(service)
        && service_type(service) != "ExternalName"
        && strings(old, "clusterIPs") == strings(service, "clusterIPs")
        && strings(old, "ipFamilies") == strings(service, "ipFamilies")
}

/// The client sent fewer values of `field` than `old` holds (and some).
fn reduced(old: &Value, service: &Value, field: &str) -> bool {
    let new = strings(service, field);
    !new.is_empty() && new.len() < strings(old, field).len()
}

fn other_family(family: &str) -> &'static str {
    IpFamily::parse(family)
        .map_or(IpFamily::Ipv4, IpFamily::other)
        .as_str()
}

fn text<'s>(service: &'s Value, field: &str) -> Option<&'s str> {
    service["spec"][field].as_str().filter(|s| !s.is_empty())
}

fn strings(service: &Value, field: &str) -> Vec<String> {
    service["spec"][field]
        .as_array()
        .map(|values| {
            values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;

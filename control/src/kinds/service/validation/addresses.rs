//! IP address and CIDR syntax, and the addresses a Service may not expose
//! (`externalIPs`).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::ServiceSpec;

use crate::validation::{FieldError, child, index};

pub(super) const INVALID_IP: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
pub(super) const INVALID_CIDR: &str =
    "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

pub(super) fn validate_external_ips(spec: &ServiceSpec) -> Vec<FieldError> {
    let external_ips_path = child("spec", "externalIPs");
    let mut errs = Vec::new();
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        errs.extend(validate_non_special_ip(ip, &index(&external_ips_path, i)));
    }
    errs
}

pub(super) fn ip_family(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

pub(super) fn validate_non_special_ip(ip: &str, path: &str) -> Vec<FieldError> {
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

pub(super) fn is_valid_cidr(value: &str) -> bool {
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

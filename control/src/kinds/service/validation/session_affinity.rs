//! `sessionAffinity` and its ClientIP timeout.

use k8s_openapi::api::core::v1::ServiceSpec;

use crate::validation::{FieldError, child};

const SESSION_AFFINITIES: [&str; 2] = ["ClientIP", "None"];
const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;

pub(super) fn validate_session_affinity(spec: &ServiceSpec) -> Vec<FieldError> {
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

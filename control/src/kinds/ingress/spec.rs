//! An Ingress's spec as kube-apiserver validates it: rules with hosts
//! (wildcards allowed, IP addresses refused), HTTP paths and their types,
//! backends (a Service with a port name or number, or a resource), TLS
//! hosts and Secret names, the default backend and the class name.

use std::net::IpAddr;

use serde_json::Value;

use super::INGRESS_CLASS_ANNOTATION;
use crate::validation::{
    FieldError, Rendered, child, index, is_dns1035_label, is_dns1123_subdomain,
    is_valid_path_segment_name, is_valid_port_name, is_valid_port_num,
    is_wildcard_dns1123_subdomain,
};

const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];
const INVALID_PATH_SEQUENCES: &[&str] = &["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: &[&str] = &["/..", "/."];

/// What a new Ingress must be: [`validate`], and a class annotation that
/// agrees with `ingressClassName` when both are set.
pub fn validate_create(ingress: &Value) -> Vec<FieldError> {
    let mut errs = validate(ingress);
    let annotation = ingress["metadata"]["annotations"][INGRESS_CLASS_ANNOTATION].as_str();
    let class = ingress["spec"]["ingressClassName"].as_str();
    if let (Some(annotation), Some(class)) = (annotation, class)
        && annotation != class
    {
        errs.push(FieldError::invalid(
            format!("annotations.{INGRESS_CLASS_ANNOTATION}"),
            annotation,
            "must match `ingressClassName` when both are specified",
        ));
    }
    errs
}

/// The spec's checks, on create and update.
pub fn validate(ingress: &Value) -> Vec<FieldError> {
    let spec = &ingress["spec"];
    let path = "spec";
    let mut errs = Vec::new();
    let rules = spec["rules"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let default_backend = &spec["defaultBackend"];
    if rules.is_empty() && default_backend.is_null() {
        // Go prints the empty rule list as `%#v` does.
        let shown = if spec["rules"].is_array() {
            "[]networking.IngressRule{}"
        } else {
            "[]networking.IngressRule(nil)"
        };
        errs.push(FieldError::invalid(
            path,
            Rendered(shown.to_owned()),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if !default_backend.is_null() {
        errs.extend(validate_backend(
            default_backend,
            &child(path, "defaultBackend"),
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        errs.extend(validate_rule(rule, &index(&child(path, "rules"), i)));
    }
    let tls = spec["tls"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for (i, entry) in tls.iter().enumerate() {
        errs.extend(validate_tls(entry, &index(&child(path, "tls"), i)));
    }
    if let Some(class) = spec["ingressClassName"].as_str() {
        errs.extend(
            is_dns1123_subdomain(class)
                .into_iter()
                .map(|msg| FieldError::invalid(child(path, "ingressClassName"), class, msg)),
        );
    }
    errs
}

/// A host of a rule or a TLS entry: a DNS-1123 subdomain, or one after
/// `*.`.
fn validate_host(host: &str, path: &str) -> Vec<FieldError> {
    let problems = if host.contains('*') {
        is_wildcard_dns1123_subdomain(host)
    } else {
        is_dns1123_subdomain(host)
    };
    problems
        .into_iter()
        .map(|msg| FieldError::invalid(path, host, msg))
        .collect()
}

fn validate_rule(rule: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(host) = rule["host"].as_str().filter(|host| !host.is_empty()) {
        let host_path = child(path, "host");
        if host.parse::<IpAddr>().is_ok() {
            errs.push(FieldError::invalid(
                &host_path,
                host,
                "must be a DNS name, not an IP address",
            ));
        }
        errs.extend(validate_host(host, &host_path));
    }
    let http = &rule["http"];
    if !http.is_null() {
        let http_path = child(path, "http");
        let paths = http["paths"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if paths.is_empty() {
            errs.push(FieldError::required(child(&http_path, "paths"), ""));
        }
        for (i, http_rule) in paths.iter().enumerate() {
            errs.extend(validate_http_path(
                http_rule,
                &index(&child(&http_path, "paths"), i),
            ));
        }
    }
    errs
}

fn validate_http_path(http_path: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(path_type) = http_path["pathType"].as_str() else {
        return vec![FieldError::required(
            child(path, "pathType"),
            "pathType must be specified",
        )];
    };
    let value = http_path["path"].as_str().unwrap_or_default();
    let value_path = child(path, "path");
    let not_absolute = || FieldError::invalid(&value_path, value, "must be an absolute path");
    match path_type {
        "Exact" | "Prefix" => {
            if !value.starts_with('/') {
                errs.push(not_absolute());
            }
            for sequence in INVALID_PATH_SEQUENCES {
                if value.contains(sequence) {
                    errs.push(FieldError::invalid(
                        &value_path,
                        value,
                        format!("must not contain '{sequence}'"),
                    ));
                }
            }
            for suffix in INVALID_PATH_SUFFIXES {
                if value.ends_with(suffix) {
                    errs.push(FieldError::invalid(
                        &value_path,
                        value,
                        format!("cannot end with '{suffix}'"),
                    ));
                }
            }
        }
        "ImplementationSpecific" => {
            if !value.is_empty() && !value.starts_with('/') {
                errs.push(not_absolute());
            }
        }
        other => errs.push(FieldError::not_supported(
            child(path, "pathType"),
            other,
            PATH_TYPES,
        )),
    }
    errs.extend(validate_backend(
        &http_path["backend"],
        &child(path, "backend"),
    ));
    errs
}

/// A backend: exactly one of a Service (with exactly one of a port name
/// or number) and a resource.
fn validate_backend(backend: &Value, path: &str) -> Vec<FieldError> {
    let service = &backend["service"];
    let resource = &backend["resource"];
    match (service.is_null(), resource.is_null()) {
        (false, false) => vec![FieldError::invalid(
            path,
            "",
            "cannot set both resource and service backends",
        )],
        (true, false) => validate_typed_reference(resource, &child(path, "resource")),
        (false, true) => validate_service_backend(service, path),
        (true, true) => vec![FieldError::invalid(
            path,
            "",
            "resource or service backend is required",
        )],
    }
}

fn validate_service_backend(service: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let service_path = child(path, "service");
    let name_path = child(&service_path, "name");
    match service["name"].as_str().filter(|name| !name.is_empty()) {
        None => errs.push(FieldError::required(name_path, "")),
        Some(name) => errs.extend(
            is_dns1035_label(name)
                .into_iter()
                .map(|msg| FieldError::invalid(&name_path, name, msg)),
        ),
    }
    let port = &service["port"];
    let port_path = child(&service_path, "port");
    let name = port["name"].as_str().filter(|name| !name.is_empty());
    let number = port["number"].as_i64().filter(|number| *number != 0);
    match (name, number) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            path,
            "",
            "cannot set both port name & port number",
        )),
        (Some(name), None) => errs.extend(
            is_valid_port_name(name)
                .into_iter()
                .map(|msg| FieldError::invalid(child(&port_path, "name"), name, msg)),
        ),
        (None, Some(number)) => errs.extend(
            is_valid_port_num(number)
                .into_iter()
                .map(|msg| FieldError::invalid(child(&port_path, "number"), number, msg)),
        ),
        (None, None) => errs.push(FieldError::required(
            path,
            "port name or number is required",
        )),
    }
    errs
}

/// A typed local object reference (a backend resource, the common part
/// of an IngressClass's parameters): apiGroup, kind and name.
pub(super) fn validate_typed_reference(resource: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(group) = resource["apiGroup"].as_str() {
        errs.extend(
            is_dns1123_subdomain(group)
                .into_iter()
                .map(|msg| FieldError::invalid(child(path, "apiGroup"), group, msg)),
        );
    }
    for field in ["kind", "name"] {
        let field_path = child(path, field);
        match resource[field].as_str().filter(|value| !value.is_empty()) {
            None => errs.push(FieldError::required(field_path, "")),
            Some(value) => errs.extend(
                is_valid_path_segment_name(value, false)
                    .into_iter()
                    .map(|msg| FieldError::invalid(&field_path, value, msg)),
            ),
        }
    }
    errs
}

fn validate_tls(entry: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let hosts = entry["hosts"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for (i, host) in hosts.iter().enumerate() {
        let host = host.as_str().unwrap_or_default();
        errs.extend(validate_host(host, &index(&child(path, "hosts"), i)));
    }
    if let Some(secret) = entry["secretName"].as_str().filter(|s| !s.is_empty()) {
        errs.extend(
            is_dns1123_subdomain(secret)
                .into_iter()
                .map(|msg| FieldError::invalid(child(path, "secretName"), secret, msg)),
        );
    }
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ingress(spec: Value) -> Value {
        json!({ "metadata": { "name": "web", "namespace": "default" }, "spec": spec })
    }

    fn texts(errors: Vec<FieldError>) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    fn with_path(path_type: Value, path: &str) -> Value {
        ingress(
            json!({ "rules": [{ "host": "example.com", "http": { "paths": [{
            "path": path, "pathType": path_type,
            "backend": { "service": { "name": "web", "port": { "number": 80 } } } }] } }] }),
        )
    }

    fn with_backend(backend: Value) -> Value {
        ingress(json!({ "defaultBackend": backend }))
    }

    const PATH: &str = "spec.rules[0].http.paths[0]";

    #[test]
    fn a_valid_ingress_passes() {
        let good = ingress(json!({
            "ingressClassName": "skiff",
            "defaultBackend": { "service": { "name": "web", "port": { "name": "http" } } },
            "rules": [
                { "host": "*.example.com", "http": { "paths": [
                    { "path": "/api", "pathType": "Prefix",
                      "backend": { "service": { "name": "api", "port": { "number": 8080 } } } },
                    { "pathType": "ImplementationSpecific",
                      "backend": { "resource": { "apiGroup": "k8s.example.com", "kind": "Bucket", "name": "static" } } },
                ] } },
                { "host": "" },
            ],
            "tls": [{ "hosts": ["example.com", "*.example.com"], "secretName": "web-tls" }],
        }));
        assert_eq!(texts(validate_create(&good)), Vec::<String>::new());
    }

    #[test]
    fn path_types_are_required_and_known() {
        assert_eq!(
            texts(validate(&with_path(Value::Null, "/"))),
            [format!(
                "{PATH}.pathType: Required value: pathType must be specified"
            )]
        );
        assert_eq!(
            texts(validate(&with_path(json!("Regex"), "/"))),
            [format!(
                "{PATH}.pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""
            )]
        );
    }

    #[test]
    fn paths_are_absolute_and_clean() {
        assert_eq!(
            texts(validate(&with_path(json!("Exact"), "api"))),
            [format!(
                "{PATH}.path: Invalid value: \"api\": must be an absolute path"
            )]
        );
        assert_eq!(
            texts(validate(&with_path(json!("Prefix"), "/a//b/.."))),
            [
                format!("{PATH}.path: Invalid value: \"/a//b/..\": must not contain '//'"),
                format!("{PATH}.path: Invalid value: \"/a//b/..\": cannot end with '/..'"),
            ]
        );
        assert_eq!(
            texts(validate(&with_path(json!("Prefix"), "/a%2Fb/./c"))),
            [
                format!("{PATH}.path: Invalid value: \"/a%2Fb/./c\": must not contain '/./'"),
                format!("{PATH}.path: Invalid value: \"/a%2Fb/./c\": must not contain '%2F'"),
            ]
        );
        // ImplementationSpecific only needs an absolute path when it has one.
        assert_eq!(
            texts(validate(&with_path(json!("ImplementationSpecific"), "x"))),
            [format!(
                "{PATH}.path: Invalid value: \"x\": must be an absolute path"
            )]
        );
        assert_eq!(
            texts(validate(&with_path(json!("ImplementationSpecific"), ""))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn hosts_are_dns_names() {
        let rule = |host: &str| {
            ingress(
                json!({ "rules": [{ "host": host, "http": { "paths": [{ "path": "/",
                "pathType": "Prefix", "backend": { "service": { "name": "web", "port": { "number": 80 } } } }] } }] }),
            )
        };
        assert_eq!(
            texts(validate(&rule("Bad_Host"))),
            [
                "spec.rules[0].host: Invalid value: \"Bad_Host\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
        assert_eq!(
            texts(validate(&rule("10.0.0.1"))),
            [
                "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"
            ]
        );
        assert_eq!(
            texts(validate(&rule("foo.*.com"))),
            [
                "spec.rules[0].host: Invalid value: \"foo.*.com\": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
        assert_eq!(
            texts(validate(&rule("*.example.com"))),
            Vec::<String>::new()
        );
        let no_paths = ingress(json!({ "rules": [{ "host": "a.com", "http": {} }] }));
        assert_eq!(
            texts(validate(&no_paths)),
            ["spec.rules[0].http.paths: Required value"]
        );
    }

    #[test]
    fn backends_need_one_target_and_one_port() {
        let both = with_backend(json!({
            "service": { "name": "web", "port": { "number": 80 } },
            "resource": { "kind": "Bucket", "name": "b" } }));
        assert_eq!(
            texts(validate(&both)),
            [
                "spec.defaultBackend: Invalid value: \"\": cannot set both resource and service backends"
            ]
        );
        assert_eq!(
            texts(validate(&with_backend(json!({})))),
            ["spec.defaultBackend: Invalid value: \"\": resource or service backend is required"]
        );
        let two_ports = with_backend(
            json!({ "service": { "name": "web", "port": { "name": "http", "number": 80 } } }),
        );
        assert_eq!(
            texts(validate(&two_ports)),
            ["spec.defaultBackend: Invalid value: \"\": cannot set both port name & port number"]
        );
        let no_port = with_backend(json!({ "service": { "name": "web", "port": {} } }));
        assert_eq!(
            texts(validate(&no_port)),
            ["spec.defaultBackend: Required value: port name or number is required"]
        );
        let bad =
            with_backend(json!({ "service": { "name": "1web", "port": { "number": 70000 } } }));
        assert_eq!(
            texts(validate(&bad)),
            [
                "spec.defaultBackend.service.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
                "spec.defaultBackend.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ]
        );
        let bad_name = with_backend(json!({ "service": { "port": { "name": "HTTP" } } }));
        assert_eq!(
            texts(validate(&bad_name)),
            [
                "spec.defaultBackend.service.name: Required value",
                "spec.defaultBackend.service.port.name: Invalid value: \"HTTP\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "spec.defaultBackend.service.port.name: Invalid value: \"HTTP\": must contain at least one letter (a-z)",
            ]
        );
        let resource = with_backend(json!({ "resource": { "apiGroup": "A_B", "name": "a/b" } }));
        assert_eq!(
            texts(validate(&resource)),
            [
                "spec.defaultBackend.resource.apiGroup: Invalid value: \"A_B\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                "spec.defaultBackend.resource.kind: Required value",
                "spec.defaultBackend.resource.name: Invalid value: \"a/b\": may not contain '/'",
            ]
        );
    }

    #[test]
    fn rules_or_a_default_backend_are_required() {
        assert_eq!(
            texts(validate(&ingress(json!({})))),
            [
                "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified"
            ]
        );
    }

    #[test]
    fn tls_hosts_secrets_and_class_names_are_checked() {
        let spec = json!({
            "defaultBackend": { "service": { "name": "web", "port": { "number": 80 } } },
            "tls": [{ "hosts": ["ok.com", "*.*.com"], "secretName": "Web_TLS" }],
            "ingressClassName": "Skiff",
        });
        let subdomain = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
        assert_eq!(
            texts(validate(&ingress(spec))),
            [
                "spec.tls[0].hosts[1]: Invalid value: \"*.*.com\": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_owned(),
                format!("spec.tls[0].secretName: Invalid value: \"Web_TLS\": {subdomain}"),
                format!("spec.ingressClassName: Invalid value: \"Skiff\": {subdomain}"),
            ]
        );
    }

    #[test]
    fn the_class_annotation_must_agree_on_create() {
        let mut both =
            with_backend(json!({ "service": { "name": "web", "port": { "number": 80 } } }));
        both["spec"]["ingressClassName"] = json!("skiff");
        both["metadata"]["annotations"] = json!({ INGRESS_CLASS_ANNOTATION: "nginx" });
        assert_eq!(
            texts(validate_create(&both)),
            [
                "annotations.kubernetes.io/ingress.class: Invalid value: \"nginx\": must match `ingressClassName` when both are specified"
            ]
        );
        assert_eq!(texts(validate(&both)), Vec::<String>::new());
    }
}

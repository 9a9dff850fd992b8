use serde_json::{Value, json};

use super::super::ip_families::init_ip_family_fields;
use super::addresses::{is_valid_cidr, validate_non_special_ip};
use super::*;
use crate::alloc::IpFamily;

fn defaulted(mut raw: Value) -> Value {
    default_service(&mut raw);
    sync_cluster_ips(&mut raw);
    raw
}

/// Defaults, completes for an IPv4 cluster, decodes and validates `raw`,
/// as a create does, returning the messages.
fn check(raw: Value) -> Vec<String> {
    let mut raw = defaulted(raw);
    if let Err(errs) = init_ip_family_fields(&[IpFamily::Ipv4], None, &mut raw) {
        return errs.iter().map(ToString::to_string).collect();
    }
    let service: Service = serde_json::from_value(raw).unwrap();
    validate_service(&service, &ServiceOptions::default())
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn svc(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

#[test]
fn defaults_cluster_ip_service() {
    let raw = defaulted(svc(
        json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}),
    ));
    assert_eq!(
        raw["spec"],
        json!({
            "type": "ClusterIP",
            "sessionAffinity": "None",
            "selector": {"app": "web"},
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
            "internalTrafficPolicy": "Cluster"
        })
    );
}

#[test]
fn defaults_node_port_client_ip_service() {
    let raw = defaulted(svc(json!({
        "type": "LoadBalancer",
        "sessionAffinity": "ClientIP",
        "clusterIP": "10.96.0.10",
        "ports": [{"port": 53, "protocol": "UDP", "targetPort": "dns"}, {"port": 80, "targetPort": 0}]
    })));
    let spec = &raw["spec"];
    assert_eq!(spec["externalTrafficPolicy"], "Cluster");
    assert_eq!(spec["allocateLoadBalancerNodePorts"], true);
    assert_eq!(
        spec["sessionAffinityConfig"],
        json!({"clientIP": {"timeoutSeconds": 10800}})
    );
    assert_eq!(spec["clusterIPs"], json!(["10.96.0.10"]));
    assert_eq!(
        spec["ports"],
        json!([
            {"port": 53, "protocol": "UDP", "targetPort": "dns"},
            {"port": 80, "protocol": "TCP", "targetPort": 80}
        ])
    );
}

#[test]
fn defaults_external_name_without_ip_fields() {
    let raw = defaulted(svc(
        json!({"type": "ExternalName", "externalName": "db.example.com"}),
    ));
    let spec = raw["spec"].as_object().unwrap();
    assert!(!spec.contains_key("ipFamilies"));
    assert!(!spec.contains_key("ipFamilyPolicy"));
    assert!(!spec.contains_key("internalTrafficPolicy"));
    assert!(!spec.contains_key("externalTrafficPolicy"));
    assert!(check(raw.clone()).is_empty(), "{:?}", check(raw));
}

#[test]
fn defaults_keep_explicit_values_and_sync_cluster_ips() {
    let raw = defaulted(svc(json!({
        "type": "NodePort",
        "externalTrafficPolicy": "Local",
        "clusterIPs": ["10.96.0.20"],
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
        "ports": [{"port": 80}]
    })));
    assert_eq!(raw["spec"]["externalTrafficPolicy"], "Local");
    assert_eq!(raw["spec"]["clusterIP"], "10.96.0.20");
    assert_eq!(
        raw["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
        60
    );
    let mut not_an_object = json!("x");
    default_service(&mut not_an_object);
    assert_eq!(not_an_object, json!("x"));
}

#[test]
fn valid_services() {
    let multi_port = svc(json!({
        "selector": {"app": "web"},
        "ports": [
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"}
        ]
    }));
    assert!(
        check(multi_port.clone()).is_empty(),
        "{:?}",
        check(multi_port)
    );
    let node_port = svc(json!({
        "type": "NodePort", "clusterIP": "10.96.0.12",
        "ports": [{"port": 80, "nodePort": 30080}]
    }));
    assert!(
        check(node_port.clone()).is_empty(),
        "{:?}",
        check(node_port)
    );
    let headless = svc(json!({"clusterIP": "None", "selector": {"app": "db"}}));
    assert!(check(headless.clone()).is_empty(), "{:?}", check(headless));
    let lb = svc(json!({
        "type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 31000,
        "loadBalancerSourceRanges": ["10.0.0.0/8", " 192.168.0.0/16"],
        "ports": [{"port": 443, "targetPort": 8443}]
    }));
    assert!(check(lb.clone()).is_empty(), "{:?}", check(lb));
}

#[test]
fn port_zero() {
    assert_eq!(
        check(svc(json!({"ports": [{"port": 0, "targetPort": 80}]}))),
        ["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"]
    );
}

#[test]
fn ports_required_unless_external_name_or_headless() {
    assert_eq!(check(svc(json!({}))), ["spec.ports: Required value"]);
    assert!(check(svc(json!({"clusterIP": "None"}))).is_empty());
}

#[test]
fn port_names_required_unique_and_labels() {
    let errs = check(svc(json!({"ports": [
        {"port": 80},
        {"name": "Http", "port": 81},
        {"name": "web", "port": 82},
        {"name": "web", "port": 83}
    ]})));
    assert_eq!(errs[0], "spec.ports[0].name: Required value");
    assert!(
        errs[1]
            .starts_with("spec.ports[1].name: Invalid value: \"Http\": a lowercase RFC 1123 label")
    );
    assert_eq!(errs[2], "spec.ports[3].name: Duplicate value: \"web\"");
    assert_eq!(errs.len(), 3);
}

#[test]
fn duplicate_port_and_protocol() {
    let errs = check(svc(json!({"ports": [
        {"name": "a", "port": 80},
        {"name": "b", "port": 80}
    ]})));
    assert_eq!(
        errs,
        [
            "spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}"
        ]
    );
}

#[test]
fn protocol_and_target_port() {
    let errs = check(svc(json!({"ports": [
        {"name": "a", "port": 80, "protocol": "HTTP", "targetPort": 70000},
        {"name": "b", "port": 81, "targetPort": "not_a_name"},
        {"name": "c", "port": 82, "appProtocol": "bad/app/proto"}
    ]})));
    assert_eq!(
        errs[..3],
        [
            "spec.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.ports[1].targetPort: Invalid value: \"not_a_name\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        ]
    );
    assert!(errs[3].starts_with("spec.ports[2].appProtocol: Invalid value: \"bad/app/proto\""));
    assert_eq!(errs.len(), 4);
}

#[test]
fn service_type() {
    assert_eq!(
        check(svc(json!({"type": "Headless", "ports": [{"port": 80}]}))),
        [
            "spec.type: Unsupported value: \"Headless\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
        ]
    );
}

#[test]
fn node_ports() {
    assert_eq!(
        check(svc(json!({"ports": [{"port": 80, "nodePort": 30080}]}))),
        ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    );
    assert_eq!(
        check(svc(json!({"type": "NodePort", "ports": [
            {"name": "a", "port": 80, "nodePort": 80},
            {"name": "b", "port": 81, "nodePort": 30001},
            {"name": "c", "port": 82, "nodePort": 30001},
            {"name": "d", "port": 82, "protocol": "UDP", "nodePort": 30001}
        ]}))),
        [
            "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
            "spec.ports[2].nodePort: Duplicate value: 30001",
        ]
    );
}

#[test]
fn headless_not_allowed_for_node_port_and_load_balancer() {
    let errs = check(svc(
        json!({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}),
    ));
    assert_eq!(
        errs,
        [
            "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"
        ]
    );
    let errs = check(svc(
        json!({"type": "LoadBalancer", "clusterIP": "None", "ports": [{"port": 10250}]}),
    ));
    assert_eq!(
        errs,
        [
            "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer services",
            "spec.ports[0]: Invalid value: 10250: may not expose port 10250 externally since it is used by kubelet",
        ]
    );
}

#[test]
fn cluster_ips() {
    assert_eq!(
        check(svc(
            json!({"clusterIP": "10.96.0.300", "ports": [{"port": 80}]})
        )),
        [
            "spec.clusterIPs[0]: Invalid value: \"10.96.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
        ]
    );
    assert_eq!(
        check(svc(
            json!({"clusterIP": "10.96.0.3", "clusterIPs": ["10.96.0.4"], "ports": [{"port": 80}]})
        )),
        [
            "spec.clusterIPs: Invalid value: []string{\"10.96.0.4\"}: first value must match `clusterIP`"
        ]
    );
    assert_eq!(
        check(svc(
            json!({"clusterIP": "fd00::1", "ports": [{"port": 80}]})
        )),
        [
            "spec.clusterIPs[0]: Invalid value: []string{\"fd00::1\"}: IPv6 is not configured on this cluster"
        ]
    );
    assert_eq!(
        check(svc(
            json!({"clusterIP": "None", "clusterIPs": ["None", "10.0.0.1"], "ports": [{"port": 80}]})
        )),
        [
            "spec.clusterIPs: Invalid value: []string{\"None\", \"10.0.0.1\"}: 'None' must be the first and only value"
        ]
    );
    assert_eq!(
        check(svc(
            json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "10.0.0.2"], "ipFamilies": ["IPv4"], "ports": [{"port": 80}]})
        )),
        [
            "spec.clusterIPs: Invalid value: []string{\"10.0.0.1\", \"10.0.0.2\"}: may specify no more than one IP for each IP family"
        ]
    );
    assert_eq!(
        check(svc(
            json!({"ipFamilies": ["IPv6", "IPv5", "IPv6"], "ipFamilyPolicy": "Mixed", "ports": [{"port": 80}]})
        )),
        [
            "spec.ipFamilies[1]: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\"",
            "spec.ipFamilies[2]: Duplicate value: \"IPv6\"",
            "spec.ipFamilyPolicy: Unsupported value: \"Mixed\": supported values: \"PreferDualStack\", \"RequireDualStack\", \"SingleStack\"",
        ]
    );
}

#[test]
fn cluster_ips_without_cluster_ip_after_decode() {
    let mut service: Service =
        serde_json::from_value(defaulted(svc(json!({"ports": [{"port": 80}]})))).unwrap();
    let spec = service.spec.as_mut().unwrap();
    spec.cluster_ips = Some(vec!["10.96.0.9".into()]);
    let errs = validate_service(&service, &ServiceOptions::default());
    assert_eq!(
        errs[0].to_string(),
        "spec.clusterIPs: Invalid value: []string{\"10.96.0.9\"}: must be empty when `clusterIP` is not specified"
    );
    let spec = service.spec.as_mut().unwrap();
    spec.cluster_ips = None;
    spec.cluster_ip = Some("10.96.0.9".into());
    let errs = validate_service(&service, &ServiceOptions::default());
    assert_eq!(errs[0].to_string(), "spec.clusterIPs: Required value");
}

#[test]
fn updates_keep_the_cluster_ip() {
    let decode = |raw: Value| -> Service { serde_json::from_value(defaulted(raw)).unwrap() };
    let opts = ServiceOptions::default();
    let old = decode(svc(
        json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}),
    ));
    let same = decode(svc(
        json!({"clusterIP": "10.96.0.10", "ports": [{"port": 81}]}),
    ));
    assert!(validate_service_update(&same, &old, &opts).is_empty());
    let moved = decode(svc(
        json!({"clusterIP": "10.96.0.11", "ports": [{"port": 80}]}),
    ));
    let errs: Vec<String> = validate_service_update(&moved, &old, &opts)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        ["spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set"]
    );
    let headless = decode(svc(json!({"clusterIP": "None", "ports": [{"port": 80}]})));
    assert_eq!(validate_service_update(&headless, &old, &opts).len(), 1);
    assert!(validate_service_update(&headless, &headless, &opts).is_empty());
    let external = decode(svc(
        json!({"type": "ExternalName", "externalName": "example.com"}),
    ));
    assert!(validate_service_update(&external, &old, &opts).is_empty());
}

#[test]
fn external_name() {
    assert_eq!(
        check(svc(json!({"type": "ExternalName"}))),
        ["spec.externalName: Required value"]
    );
    assert!(
        check(svc(
            json!({"type": "ExternalName", "externalName": "db.example.com."})
        ))
        .is_empty()
    );
    let errs = check(svc(
        json!({"type": "ExternalName", "externalName": "Bad_Name", "clusterIP": "10.0.0.1",
                                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}),
    ));
    assert_eq!(
        errs[..3],
        [
            "spec.clusterIPs: Forbidden: may not be set for ExternalName services",
            "spec.ipFamilies: Forbidden: may not be set for ExternalName services",
            "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services",
        ]
    );
    assert!(errs[3].starts_with(
        "spec.externalName: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"
    ));
}

#[test]
fn session_affinity() {
    assert_eq!(
        check(svc(
            json!({"sessionAffinity": "Sticky", "ports": [{"port": 80}]})
        )),
        [
            "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\""
        ]
    );
    assert_eq!(
        check(svc(
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}, "ports": [{"port": 80}]})
        )),
        [
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400"
        ]
    );
    assert!(check(svc(json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86400}}, "ports": [{"port": 80}]}))).is_empty());
    assert_eq!(
        check(svc(
            json!({"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}, "ports": [{"port": 80}]})
        )),
        ["spec.sessionAffinityConfig: Forbidden: must not be set when session affinity is None"]
    );
}

#[test]
fn session_affinity_config_required_for_client_ip() {
    let mut service: Service =
        serde_json::from_value(defaulted(svc(json!({"ports": [{"port": 80}]})))).unwrap();
    let spec = service.spec.as_mut().unwrap();
    spec.session_affinity = Some("ClientIP".into());
    let errs = validate_service(&service, &ServiceOptions::default());
    assert_eq!(
        errs[0].to_string(),
        "spec.sessionAffinityConfig: Required value: when session affinity type is ClientIP"
    );
}

#[test]
fn traffic_policies() {
    assert_eq!(
        check(svc(
            json!({"externalTrafficPolicy": "Local", "internalTrafficPolicy": "Nearby", "ports": [{"port": 80}]})
        )),
        [
            "spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services",
            "spec.internalTrafficPolicy: Unsupported value: \"Nearby\": supported values: \"Cluster\", \"Local\"",
        ]
    );
    assert_eq!(
        check(svc(
            json!({"type": "NodePort", "externalTrafficPolicy": "Everywhere", "healthCheckNodePort": 31000, "ports": [{"port": 80}]})
        )),
        [
            "spec.externalTrafficPolicy: Unsupported value: \"Everywhere\": supported values: \"Cluster\", \"Local\"",
            "spec.healthCheckNodePort: Invalid value: 31000: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ]
    );
}

#[test]
fn traffic_distribution() {
    for value in ["PreferClose", "PreferSameZone", "PreferSameNode"] {
        assert_eq!(
            check(svc(
                json!({"trafficDistribution": value, "ports": [{"port": 80}]})
            )),
            Vec::<String>::new(),
            "{value}"
        );
    }
    assert_eq!(
        check(svc(
            json!({"trafficDistribution": "PreferSameRack", "ports": [{"port": 80}]})
        )),
        [
            "spec.trafficDistribution: Unsupported value: \"PreferSameRack\": supported values: \"PreferClose\", \"PreferSameZone\", \"PreferSameNode\"",
        ]
    );
}

#[test]
fn selector_external_ips_and_source_ranges() {
    let errs = check(svc(json!({
        "selector": {"app": "web!"},
        "externalIPs": ["1.2.3.4", "127.0.0.1", "nope"],
        "loadBalancerSourceRanges": ["10.0.0.0/33"],
        "allocateLoadBalancerNodePorts": false,
        "ports": [{"port": 80}]
    })));
    assert!(errs[0].starts_with("spec.selector: Invalid value: \"web!\": a valid label must be"));
    assert_eq!(
        errs[1..],
        [
            "spec.externalIPs[1]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
            "spec.externalIPs[2]: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            "spec.loadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'",
            "spec.loadBalancerSourceRanges[0]: Invalid value: \"10.0.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            "spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'",
            // externalIPs make a ClusterIP service externally accessible.
            "spec.externalTrafficPolicy: Required value",
        ]
    );
}

#[test]
fn undefaulted_service_reports_required_fields() {
    let service: Service = serde_json::from_value(svc(json!({"ports": [{"port": 80}]}))).unwrap();
    let errs: Vec<String> = validate_service(&service, &ServiceOptions::default())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        [
            "spec.ports[0].protocol: Required value",
            "spec.ports[0].targetPort: Required value",
            "spec.sessionAffinity: Required value",
            "spec.type: Required value",
        ]
    );
}

#[test]
fn special_ips() {
    for (ip, reason) in [
        ("0.0.0.0", "unspecified"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.5", "multicast"),
    ] {
        let errs = validate_non_special_ip(ip, "x");
        assert!(errs[0].message.contains(reason), "{ip}: {errs:?}");
    }
    assert!(validate_non_special_ip("2001:db8::1", "x").is_empty());
    assert!(is_valid_cidr("2001:db8::/64"));
    assert!(!is_valid_cidr("2001:db8::/129"));
    assert!(!is_valid_cidr("10.0.0.0"));
}

#[test]
fn the_outlier_detection_annotation_must_be_readable() {
    let with = |value: &str| {
        let mut raw = svc(json!({"ports": [{"port": 80}]}));
        raw["metadata"]["annotations"] = json!({ "skiff.io/outlier-detection": value });
        check(raw)
    };
    assert!(with("true").is_empty());
    assert!(with(r#"{"consecutiveFailures":3,"baseEjectionSeconds":5}"#).is_empty());
    let errors = with(r#"{"consecutiveFailures":0}"#);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("metadata.annotations[skiff.io/outlier-detection]: Invalid value: ")
            && errors[0].ends_with(": consecutiveFailures must be at least 1"),
        "{errors:?}"
    );
}

//! Tables after kube-apiserver's Service registry tests: what a create or
//! an update of the IP family fields becomes on single- and dual-stack
//! clusters.

use serde_json::{Value, json};

use super::*;

const V4: &[IpFamily] = &[IpFamily::Ipv4];
const V6: &[IpFamily] = &[IpFamily::Ipv6];
const V4_V6: &[IpFamily] = &[IpFamily::Ipv4, IpFamily::Ipv6];
const V6_V4: &[IpFamily] = &[IpFamily::Ipv6, IpFamily::Ipv4];

fn service(spec: Value) -> Value {
    let mut spec = spec;
    spec["ports"] = json!([{"port": 80, "protocol": "TCP"}]);
    if spec.get("type").is_none() {
        spec["type"] = json!("ClusterIP");
    }
    if spec.get("selector").is_none() {
        spec["selector"] = json!({"app": "web"});
    }
    json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

/// The completed `(ipFamilyPolicy, ipFamilies, clusterIPs)`, or the errors.
fn init(
    configured: &[IpFamily],
    old: Option<Value>,
    spec: Value,
) -> Result<(String, Vec<String>, Vec<String>), Vec<String>> {
    let mut new = service(spec);
    let old = old.map(service);
    init_ip_family_fields(configured, old.as_ref(), &mut new)
        .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    Ok((
        text(&new, "ipFamilyPolicy").unwrap_or_default().to_owned(),
        strings(&new, "ipFamilies"),
        strings(&new, "clusterIPs"),
    ))
}

fn families(policy: &str, families: &[&str]) -> (String, Vec<String>) {
    (
        policy.to_owned(),
        families.iter().map(|f| (*f).to_owned()).collect(),
    )
}

/// Only policy and families, for the cases that request no IPs.
fn init_families(configured: &[IpFamily], spec: Value) -> (String, Vec<String>) {
    let (policy, families, _) = init(configured, None, spec).unwrap();
    (policy, families)
}

/// The cluster's families, the spec sent, and the policy and families it
/// gets.
type Case = (
    &'static [IpFamily],
    Value,
    (&'static str, &'static [&'static str]),
);

#[test]
fn creates_on_single_and_dual_stack_clusters() {
    let cases: &[Case] = &[
        (V4, json!({}), ("SingleStack", &["IPv4"])),
        (V6, json!({}), ("SingleStack", &["IPv6"])),
        (V4_V6, json!({}), ("SingleStack", &["IPv4"])),
        (V6_V4, json!({}), ("SingleStack", &["IPv6"])),
        (
            V4,
            json!({"ipFamilyPolicy": "PreferDualStack"}),
            ("PreferDualStack", &["IPv4"]),
        ),
        (
            V4_V6,
            json!({"ipFamilyPolicy": "PreferDualStack"}),
            ("PreferDualStack", &["IPv4", "IPv6"]),
        ),
        (
            V4_V6,
            json!({"ipFamilyPolicy": "RequireDualStack"}),
            ("RequireDualStack", &["IPv4", "IPv6"]),
        ),
        (
            V6_V4,
            json!({"ipFamilyPolicy": "RequireDualStack"}),
            ("RequireDualStack", &["IPv6", "IPv4"]),
        ),
        (
            V4_V6,
            json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6"]}),
            ("RequireDualStack", &["IPv6", "IPv4"]),
        ),
        (
            V4_V6,
            json!({"ipFamilies": ["IPv6"]}),
            ("SingleStack", &["IPv6"]),
        ),
        (
            V4_V6,
            json!({"clusterIP": "fd00::5", "clusterIPs": ["fd00::5"]}),
            ("SingleStack", &["IPv6"]),
        ),
        (
            V4_V6,
            json!({"ipFamilyPolicy": "PreferDualStack", "clusterIP": "fd00::5", "clusterIPs": ["fd00::5"]}),
            ("PreferDualStack", &["IPv6", "IPv4"]),
        ),
        (
            V4_V6,
            json!({"ipFamilyPolicy": "RequireDualStack", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5", "fd00::5"]}),
            ("RequireDualStack", &["IPv4", "IPv6"]),
        ),
        // Headless without a selector: dual-stack by default, also on a
        // single-stack cluster (it needs no IPs).
        (
            V4,
            json!({"clusterIP": "None", "clusterIPs": ["None"], "selector": {}}),
            ("RequireDualStack", &["IPv4", "IPv6"]),
        ),
        (
            V6_V4,
            json!({"clusterIP": "None", "clusterIPs": ["None"], "selector": {}, "ipFamilyPolicy": "SingleStack"}),
            ("SingleStack", &["IPv6"]),
        ),
        // Headless with a selector follows the headful rules.
        (
            V4_V6,
            json!({"clusterIP": "None", "clusterIPs": ["None"], "ipFamilyPolicy": "PreferDualStack"}),
            ("PreferDualStack", &["IPv4", "IPv6"]),
        ),
    ];
    for (configured, spec, (policy, expected)) in cases {
        assert_eq!(
            init_families(configured, spec.clone()),
            families(policy, expected),
            "{configured:?} {spec}"
        );
    }
}

#[test]
fn creates_refused_as_kube_apiserver_refuses_them() {
    let cases: &[(&[IpFamily], Value, &[&str])] = &[
        (
            V4,
            json!({"ipFamilyPolicy": "RequireDualStack"}),
            &[
                "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services",
            ],
        ),
        (
            V4,
            json!({"ipFamilies": ["IPv6"]}),
            &["spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster"],
        ),
        (
            V4,
            json!({"clusterIP": "fd00::5", "clusterIPs": ["fd00::5"]}),
            &[
                "spec.clusterIPs[0]: Invalid value: []string{\"fd00::5\"}: IPv6 is not configured on this cluster",
            ],
        ),
        (
            V4_V6,
            json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4", "IPv6"]}),
            &[
                "spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ],
        ),
        (
            V4_V6,
            json!({"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5", "fd00::5"]}),
            &[
                "spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ],
        ),
        (
            V4_V6,
            json!({"ipFamilyPolicy": "RequireDualStack", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5", "10.96.0.6"]}),
            &[
                "spec.clusterIPs: Invalid value: []string{\"10.96.0.5\", \"10.96.0.6\"}: may specify no more than one IP for each IP family",
            ],
        ),
        (
            V4_V6,
            json!({"ipFamilyPolicy": "RequireDualStack", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5", "fd00::5", "10.96.0.6"]}),
            &[
                "spec.clusterIPs: Invalid value: []string{\"10.96.0.5\", \"fd00::5\", \"10.96.0.6\"}: may only hold up to 2 values",
            ],
        ),
        (
            V4_V6,
            json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6"], "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"]}),
            &[
                "spec.clusterIPs[0]: Invalid value: \"10.96.0.5\": expected an IPv6 value as indicated by `ipFamilies[0]`",
            ],
        ),
    ];
    for (configured, spec, expected) in cases {
        assert_eq!(
            init(configured, None, spec.clone()).unwrap_err(),
            *expected,
            "{configured:?} {spec}"
        );
    }
}

fn dual(policy: &str) -> Value {
    json!({"ipFamilyPolicy": policy, "ipFamilies": ["IPv4", "IPv6"],
           "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5", "fd00::5"]})
}

fn single() -> Value {
    json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
           "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"]})
}

#[test]
fn upgrades_and_downgrades() {
    let strings = |values: &[&str]| values.iter().map(|v| (*v).to_owned()).collect::<Vec<_>>();

    // Upgrade: a new policy asks for the second family; its IP is left to
    // the allocator.
    let mut upgrade = single();
    upgrade["ipFamilyPolicy"] = json!("RequireDualStack");
    assert_eq!(
        init(V4_V6, Some(single()), upgrade).unwrap(),
        (
            "RequireDualStack".to_owned(),
            strings(&["IPv4", "IPv6"]),
            strings(&["10.96.0.5"])
        )
    );

    // Downgrade: SingleStack with the same values drops the second.
    let mut downgrade = dual("RequireDualStack");
    downgrade["ipFamilyPolicy"] = json!("SingleStack");
    assert_eq!(
        init(V4_V6, Some(dual("RequireDualStack")), downgrade).unwrap(),
        (
            "SingleStack".to_owned(),
            strings(&["IPv4"]),
            strings(&["10.96.0.5"])
        )
    );

    // Dropping the second IP needs SingleStack.
    let mut dropped = dual("RequireDualStack");
    dropped["clusterIPs"] = json!(["10.96.0.5"]);
    dropped["ipFamilies"] = json!(["IPv4"]);
    assert_eq!(
        init(V4_V6, Some(dual("RequireDualStack")), dropped).unwrap_err(),
        [
            "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": must be 'SingleStack' to release the secondary cluster IP",
            "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": must be 'SingleStack' to release the secondary IP family",
        ]
    );

    // The policy left out is the stored one.
    let mut unset = dual("RequireDualStack");
    unset.as_object_mut().unwrap().remove("ipFamilyPolicy");
    assert_eq!(
        init(V4_V6, Some(dual("RequireDualStack")), unset)
            .unwrap()
            .0,
        "RequireDualStack"
    );

    // PreferDualStack, unchanged, stays single-stack when the cluster
    // became dual-stack, and dual-stack when it stopped being so.
    let prefer_single = json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4"],
                               "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"]});
    assert_eq!(
        init(V4_V6, Some(prefer_single.clone()), prefer_single)
            .unwrap()
            .1,
        strings(&["IPv4"])
    );
    assert_eq!(
        init(V4, Some(dual("PreferDualStack")), dual("PreferDualStack"))
            .unwrap()
            .1,
        strings(&["IPv4", "IPv6"])
    );
}

#[test]
fn external_name_services_are_left_alone() {
    let mut external = json!({"metadata": {"name": "web"},
                             "spec": {"type": "ExternalName", "externalName": "example.com"}});
    let before = external.clone();
    init_ip_family_fields(V4_V6, None, &mut external).unwrap();
    assert_eq!(external, before);
    let mut not_an_object = json!({"spec": "nope"});
    init_ip_family_fields(V4, None, &mut not_an_object).unwrap();
}

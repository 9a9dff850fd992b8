use super::*;

fn set(template_spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": { "name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 2 },
        "spec": {
            "selector": { "matchLabels": { "app": "agent" } },
            "template": { "metadata": { "labels": { "app": "agent" } }, "spec": template_spec },
            "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 1, "maxSurge": 0 } },
        },
    })
}

fn node(name: &str, labels: Value, taints: Value) -> Value {
    json!({ "metadata": { "name": name, "labels": labels }, "spec": { "taints": taints } })
}

fn probe(template_spec: Value) -> Value {
    pod_for(&set(template_spec), "h1", None)
}

const YES: Eligibility = Eligibility {
    should_run: true,
    should_continue: true,
};
const NO: Eligibility = Eligibility {
    should_run: false,
    should_continue: false,
};

#[test]
fn node_selectors_and_affinity_choose_the_nodes() {
    let ssd = node("n1", json!({ "disk": "ssd" }), json!([]));
    let hdd = node("n2", json!({ "disk": "hdd" }), json!([]));
    let selected = probe(json!({ "nodeSelector": { "disk": "ssd" } }));
    assert_eq!(eligibility(&selected, &ssd), YES);
    assert_eq!(eligibility(&selected, &hdd), NO);
    let by_name = probe(json!({ "affinity": { "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
            { "matchFields": [{ "key": "metadata.name", "operator": "NotIn", "values": ["n1"] }] },
        ] },
    } } }));
    assert_eq!(eligibility(&by_name, &ssd), NO);
    assert_eq!(eligibility(&by_name, &hdd), YES);
    let by_label = probe(json!({ "affinity": { "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
            { "matchExpressions": [{ "key": "disk", "operator": "In", "values": ["hdd"] }] },
        ] },
    } } }));
    assert_eq!(eligibility(&by_label, &ssd), NO);
    assert_eq!(eligibility(&by_label, &hdd), YES);
    let pinned = probe(json!({ "nodeName": "n2" }));
    assert_eq!(eligibility(&pinned, &ssd), NO);
}

#[test]
fn taints_keep_daemon_pods_off_unless_tolerated() {
    let plain = probe(json!({}));
    let no_schedule = node(
        "n1",
        json!({}),
        json!([{ "key": "dedicated", "value": "db", "effect": "NoSchedule" }]),
    );
    // A pod already there stays; none is started.
    assert_eq!(
        eligibility(&plain, &no_schedule),
        Eligibility {
            should_run: false,
            should_continue: true
        }
    );
    let no_execute = node(
        "n1",
        json!({}),
        json!([{ "key": "dedicated", "effect": "NoExecute" }]),
    );
    assert_eq!(eligibility(&plain, &no_execute), NO);
    let tolerant = probe(json!({ "tolerations": [{ "key": "dedicated", "operator": "Exists" }] }));
    assert_eq!(eligibility(&tolerant, &no_schedule), YES);
    assert_eq!(eligibility(&tolerant, &no_execute), YES);
    // The default tolerations: unwell and cordoned nodes still get one.
    for (key, effect) in DEFAULT_TOLERATIONS {
        let tainted = node("n1", json!({}), json!([{ "key": key, "effect": effect }]));
        assert_eq!(eligibility(&plain, &tainted), YES, "{key}");
    }
    let no_network = node(
        "n1",
        json!({}),
        json!([{ "key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule" }]),
    );
    assert!(!eligibility(&plain, &no_network).should_run);
    let host = probe(json!({ "hostNetwork": true }));
    assert_eq!(eligibility(&host, &no_network), YES);
}

#[test]
fn daemon_pods_are_pinned_to_their_node() {
    let mut spec = json!({ "containers": [{ "name": "c", "image": "i" }] });
    spec["affinity"] = json!({ "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{ "matchExpressions": [{ "key": "disk", "operator": "Exists" }] }],
    } } });
    spec["tolerations"] = json!([{ "key": "node.kubernetes.io/unschedulable", "operator": "Equal", "effect": "NoSchedule" }]);
    let pod = pod_for(&set(spec), "h1", Some("n3"));
    assert_eq!(pod["metadata"]["generateName"], "agent-");
    assert_eq!(pod["metadata"]["labels"][REVISION_HASH_LABEL], "h1");
    assert_eq!(pod["metadata"]["labels"]["app"], "agent");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "ds-uid");
    assert_eq!(target_node(&pod), "n3");
    assert_eq!(
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
        json!({ "nodeSelectorTerms": [{ "matchFields": [
            { "key": "metadata.name", "operator": "In", "values": ["n3"] },
        ] }] })
    );
    let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
    assert_eq!(tolerations.len(), DEFAULT_TOLERATIONS.len());
    assert!(tolerations.iter().all(|t| t["operator"] == "Exists"));
}

fn daemon_pod(name: &str, hash: &str, ready: bool) -> Value {
    json!({
        "metadata": { "name": name, "labels": { REVISION_HASH_LABEL: hash } },
        "status": { "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }] },
    })
}

fn placement<'a>(node: &'a str, pods: Vec<&'a Value>) -> Placement<'a> {
    Placement {
        node,
        eligible: YES,
        pods,
    }
}

fn names(pods: &[&Value]) -> Vec<String> {
    pods.iter().map(|pod| meta::name(pod).to_owned()).collect()
}

#[test]
fn limits_round_up_and_never_stall() {
    let percent = |p: i64| IntOrPercent::Percent(p);
    assert_eq!(limits(IntOrPercent::Int(0), percent(25), 3), (0, 1));
    assert_eq!(limits(IntOrPercent::Int(0), percent(50), 5), (0, 3));
    assert_eq!(limits(percent(10), IntOrPercent::Int(0), 3), (1, 0));
    assert_eq!(limits(IntOrPercent::Int(0), percent(0), 4), (0, 1));
    assert_eq!(
        limits(IntOrPercent::Int(0), IntOrPercent::Int(0), 0),
        (0, 0)
    );
}

#[test]
fn rolling_update_replaces_within_max_unavailable() {
    let old = [
        daemon_pod("a", "old", true),
        daemon_pod("b", "old", true),
        daemon_pod("c", "old", true),
        daemon_pod("d", "old", false),
    ];
    let placements = vec![
        placement("n1", vec![&old[0]]),
        placement("n2", vec![&old[1]]),
        placement("n3", vec![&old[2]]),
        placement("n4", vec![&old[3]]),
    ];
    let ready = |pod: &Value| meta::pod_ready(pod);
    // The not-ready old pod goes regardless; of the rest, two at a time.
    let actions = roll(&placements, "new", 0, 2, &ready);
    assert!(actions.create.is_empty());
    assert_eq!(names(&actions.delete), ["d", "a", "b"]);

    // A new pod that is not ready yet uses up the budget.
    let starting = daemon_pod("e", "new", false);
    let placements = vec![
        placement("n1", vec![&starting]),
        placement("n2", vec![&old[1]]),
        placement("n3", vec![&old[2]]),
    ];
    assert!(roll(&placements, "new", 0, 1, &ready).is_empty());
    let done = daemon_pod("e", "new", true);
    let placements = vec![
        placement("n1", vec![&done]),
        placement("n2", vec![&old[1]]),
        placement("n3", vec![&old[2]]),
    ];
    assert_eq!(names(&roll(&placements, "new", 0, 1, &ready).delete), ["b"]);
}

#[test]
fn rolling_update_with_surge_starts_new_pods_first() {
    let old = [daemon_pod("a", "old", true), daemon_pod("b", "old", true)];
    let ready = |pod: &Value| meta::pod_ready(pod);
    let placements = vec![
        placement("n1", vec![&old[0]]),
        placement("n2", vec![&old[1]]),
    ];
    let actions = roll(&placements, "new", 1, 0, &ready);
    assert_eq!(actions.create, ["n1"]);
    assert!(actions.delete.is_empty());

    let starting = daemon_pod("c", "new", false);
    let placements = vec![
        placement("n1", vec![&old[0], &starting]),
        placement("n2", vec![&old[1]]),
    ];
    assert!(roll(&placements, "new", 1, 0, &ready).is_empty());

    let up = daemon_pod("c", "new", true);
    let placements = vec![
        placement("n1", vec![&old[0], &up]),
        placement("n2", vec![&old[1]]),
    ];
    let actions = roll(&placements, "new", 1, 0, &ready);
    assert_eq!(names(&actions.delete), ["a"]);
    assert_eq!(actions.create, ["n2"]);
}

#[test]
fn manage_keeps_one_pod_per_eligible_node() {
    let pods = [
        daemon_pod("a", "h", true),
        daemon_pod("b", "h", true),
        daemon_pod("c", "h", true),
    ];
    let placements = vec![
        placement("n1", vec![]),
        placement("n2", vec![&pods[0], &pods[1]]),
        Placement {
            node: "n3",
            eligible: NO,
            pods: vec![&pods[2]],
        },
        Placement {
            node: "n4",
            eligible: Eligibility {
                should_run: false,
                should_continue: true,
            },
            pods: vec![],
        },
    ];
    let mut actions = Actions::default();
    manage(&placements, "h", false, &mut actions);
    assert_eq!(actions.create, ["n1"]);
    assert_eq!(names(&actions.delete), ["b", "c"]);
}

#[test]
fn status_counts_nodes() {
    let pods = [
        daemon_pod("a", "new", true),
        daemon_pod("b", "old", false),
        daemon_pod("c", "new", true),
    ];
    let placements = vec![
        placement("n1", vec![&pods[0]]),
        placement("n2", vec![&pods[1]]),
        placement("n3", vec![]),
        Placement {
            node: "n4",
            eligible: NO,
            pods: vec![&pods[2]],
        },
    ];
    let status = status(&set(json!({})), "new", &placements);
    assert_eq!(
        status,
        json!({
            "desiredNumberScheduled": 3,
            "currentNumberScheduled": 2,
            "numberReady": 1,
            "numberAvailable": 1,
            "numberUnavailable": 2,
            "updatedNumberScheduled": 1,
            "numberMisscheduled": 1,
            "observedGeneration": 2,
        })
    );
}

#[test]
fn availability_waits_for_min_ready_seconds() {
    let pod = json!({ "status": { "conditions": [
        { "type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z" },
    ] } });
    let at = |time: &str| time.parse().unwrap();
    assert!(pod_available(&pod, 0, at("2024-01-01T00:00:00Z")));
    assert!(!pod_available(&pod, 10, at("2024-01-01T00:00:05Z")));
    assert!(pod_available(&pod, 10, at("2024-01-01T00:00:10Z")));
}

#[test]
fn a_revision_holds_the_template_as_a_replace_patch() {
    let set = set(json!({ "containers": [{ "name": "c", "image": "i" }] }));
    let revision = new_revision(&set, "h1", 3);
    assert_eq!(revision["metadata"]["name"], "agent-h1");
    assert_eq!(revision["metadata"]["labels"][REVISION_HASH_LABEL], "h1");
    assert_eq!(revision["revision"], 3);
    assert_eq!(revision["data"]["spec"]["template"]["$patch"], "replace");
    assert_eq!(
        revision["data"]["spec"]["template"]["spec"],
        set["spec"]["template"]["spec"]
    );
}

"""The Python `kubernetes` client (37.x) against skiff-control: every kind
it can create is created and deleted, each delete decoded as the client's
declared return type; then deletecollection removes only what its label
selector matches. Run by tests/tests/api_verbs.rs with the kubeconfig as
its only argument; exits non-zero (with the traceback) on any failure."""

import sys

from kubernetes import client, config

NS = "verbs"


def meta(name, **extra):
    return {"name": name, **extra}


def pod_template(app):
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "skiff/busybox"}]},
    }


def workload(kind, name, **spec):
    body = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": meta(name),
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": pod_template(name)},
    }
    body["spec"].update(spec)
    return body


def check_deleted(kind, name, answer):
    """The delete's answer: the typed object for kinds whose registry returns
    it, else the object (marked) or a Status, as a dict."""
    if isinstance(answer, dict):
        assert answer.get("kind") in ("Status", kind), (kind, answer)
        if answer["kind"] == "Status":
            assert answer["status"] == "Success", answer
            assert answer["details"]["name"] == name, answer
        else:
            assert answer["metadata"]["name"] == name, answer
    else:
        assert type(answer).__name__ == "V1" + kind, (kind, type(answer))
        assert answer.metadata.name == name, answer
    print(f"deleted {kind} {name}: {type(answer).__name__}")


def main():
    config.load_kube_config(config_file=sys.argv[1])
    core = client.CoreV1Api()
    apps = client.AppsV1Api()
    batch = client.BatchV1Api()
    net = client.NetworkingV1Api()
    storage = client.StorageV1Api()
    coordination = client.CoordinationV1Api()
    discovery = client.DiscoveryV1Api()
    events = client.EventsV1Api()

    core.create_namespace({"metadata": meta(NS)})

    # (kind, create, delete, body); namespaced ones take the namespace.
    namespaced = [
        ("ConfigMap", core.create_namespaced_config_map, core.delete_namespaced_config_map,
         {"metadata": meta("cm"), "data": {"k": "v"}}),
        ("Secret", core.create_namespaced_secret, core.delete_namespaced_secret,
         {"metadata": meta("secret"), "stringData": {"k": "v"}}),
        ("Service", core.create_namespaced_service, core.delete_namespaced_service,
         {"metadata": meta("svc"), "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}}),
        ("Pod", core.create_namespaced_pod, core.delete_namespaced_pod,
         {"metadata": meta("pod"), "spec": pod_template("pod")["spec"]}),
        ("Endpoints", core.create_namespaced_endpoints, core.delete_namespaced_endpoints,
         {"metadata": meta("ep"), "subsets": []}),
        ("PersistentVolumeClaim", core.create_namespaced_persistent_volume_claim,
         core.delete_namespaced_persistent_volume_claim,
         {"metadata": meta("claim"), "spec": {"accessModes": ["ReadWriteOnce"],
                                              "resources": {"requests": {"storage": "1Mi"}}}}),
        ("Event", core.create_namespaced_event, core.delete_namespaced_event,
         {"metadata": meta("pod.17a2b"), "involvedObject": {"kind": "Pod", "name": "pod", "namespace": NS},
          "reason": "Test", "message": "hello", "type": "Normal"}),
        ("Deployment", apps.create_namespaced_deployment, apps.delete_namespaced_deployment,
         workload("Deployment", "deploy", replicas=0)),
        ("ReplicaSet", apps.create_namespaced_replica_set, apps.delete_namespaced_replica_set,
         workload("ReplicaSet", "rs", replicas=0)),
        ("StatefulSet", apps.create_namespaced_stateful_set, apps.delete_namespaced_stateful_set,
         workload("StatefulSet", "sts", replicas=0, serviceName="sts")),
        ("DaemonSet", apps.create_namespaced_daemon_set, apps.delete_namespaced_daemon_set,
         workload("DaemonSet", "ds")),
        ("ControllerRevision", apps.create_namespaced_controller_revision,
         apps.delete_namespaced_controller_revision,
         {"metadata": meta("rev"), "revision": 1, "data": {}}),
        ("Job", batch.create_namespaced_job, batch.delete_namespaced_job,
         {"metadata": meta("job"), "spec": {"suspend": True, "template": {
             "spec": {**pod_template("job")["spec"], "restartPolicy": "Never"}}}}),
        ("CronJob", batch.create_namespaced_cron_job, batch.delete_namespaced_cron_job,
         {"metadata": meta("cron"), "spec": {"schedule": "0 0 * * *", "suspend": True, "jobTemplate": {
             "spec": {"template": {"spec": {**pod_template("cron")["spec"], "restartPolicy": "Never"}}}}}}),
        ("Ingress", net.create_namespaced_ingress, net.delete_namespaced_ingress,
         {"metadata": meta("ing"), "spec": {"defaultBackend": {"service": {"name": "svc", "port": {"number": 80}}}}}),
        ("Lease", coordination.create_namespaced_lease, coordination.delete_namespaced_lease,
         {"metadata": meta("lease"), "spec": {"holderIdentity": "me"}}),
        ("EndpointSlice", discovery.create_namespaced_endpoint_slice,
         discovery.delete_namespaced_endpoint_slice,
         {"metadata": meta("slice"), "addressType": "IPv4", "endpoints": []}),
        ("Event", events.create_namespaced_event, events.delete_namespaced_event,
         {"metadata": meta("ev2"), "eventTime": "2026-01-02T03:04:05.000000Z",
          "reportingController": "skiff.io/test", "reportingInstance": "test", "action": "Test",
          "reason": "Test", "type": "Normal", "regarding": {"kind": "Pod", "name": "pod", "namespace": NS}}),
    ]
    cluster = [
        ("PersistentVolume", core.create_persistent_volume, core.delete_persistent_volume,
         {"metadata": meta("volume"), "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteOnce"],
                                               "hostPath": {"path": "/tmp/skiff-api-verbs"},
                                               "storageClassName": "manual"}}),
        ("StorageClass", storage.create_storage_class, storage.delete_storage_class,
         {"metadata": meta("slow"), "provisioner": "example.com/slow"}),
        ("Node", core.create_node, core.delete_node, {"metadata": meta("fake-node")}),
    ]
    for kind, create, delete, body in namespaced:
        create(NS, body)
        check_deleted(kind, body["metadata"]["name"], delete(body["metadata"]["name"], NS))
    for kind, create, delete, body in cluster:
        create(body)
        check_deleted(kind, body["metadata"]["name"], delete(body["metadata"]["name"]))

    # deletecollection by label selector: only app=x goes.
    for name, app in [("x1", "x"), ("x2", "x"), ("y1", "y")]:
        core.create_namespaced_config_map(NS, {"metadata": meta(name, labels={"app": app})})
    answer = core.delete_collection_namespaced_config_map(NS, label_selector="app=x")
    assert isinstance(answer, client.V1Status), type(answer)
    left = sorted(cm.metadata.name for cm in core.list_namespaced_config_map(NS).items)
    assert "y1" in left and "x1" not in left and "x2" not in left, left
    print(f"deletecollection app=x left {left}")

    # A dry run changes nothing; a stale uid precondition is a 409.
    core.delete_namespaced_config_map("y1", NS, dry_run="All")
    core.read_namespaced_config_map("y1", NS)
    try:
        core.delete_namespaced_config_map(
            "y1", NS, body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-it")))
        raise AssertionError("a delete with a wrong uid precondition succeeded")
    except client.ApiException as error:
        assert error.status == 409, error
    core.read_namespaced_config_map("y1", NS)

    check_deleted("Namespace", NS, core.delete_namespace(NS))
    print("python client: all deletes decoded")


if __name__ == "__main__":
    main()

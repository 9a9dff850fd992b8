"""The Python `kubernetes` client as a user RBAC refuses: bob (from
tests/tests/rbac.rs's token file) may not read Secrets in `default`, and
the client raises ApiException 403 with kube-apiserver's Status. Run with
bob's kubeconfig as the only argument; exits non-zero on any failure."""

import json
import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()

for call, expected in [
    (
        lambda: core.list_namespaced_secret("default"),
        {
            "message": 'secrets is forbidden: User "bob" cannot list resource "secrets" '
            'in API group "" in the namespace "default"',
            "details": {"kind": "secrets"},
        },
    ),
    (
        lambda: core.read_namespaced_secret("s1", "default"),
        {
            "message": 'secrets "s1" is forbidden: User "bob" cannot get resource "secrets" '
            'in API group "" in the namespace "default"',
            "details": {"name": "s1", "kind": "secrets"},
        },
    ),
]:
    try:
        call()
    except ApiException as error:
        assert error.status == 403, error
        status = json.loads(error.body)
        assert status["kind"] == "Status" and status["reason"] == "Forbidden", status
        assert status["code"] == 403, status
        assert status["message"] == expected["message"], status["message"]
        assert status["details"] == expected["details"], status["details"]
    else:
        raise AssertionError("bob was allowed")

print("python client: 403 Forbidden for bob")

"""The Python `kubernetes` client (37.x) with service-account tokens against
skiff-control: TokenRequest (create_namespaced_service_account_token), the
token authenticating as its ServiceAccount, 401 for tampered and
wrong-audience tokens, TokenReview, the ServiceAccount admission plugin
(the injected kube-api-access volume, a missing account refused) and a
pod-bound token that stops working once its pod is gone. Run by
tests/tests/service_accounts.rs with the kubeconfig, the namespace and a
token `kubectl create token default` printed; exits non-zero (with the
traceback) on any failure."""

import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException

KUBECONFIG, NS, KUBECTL_TOKEN = sys.argv[1], sys.argv[2], sys.argv[3]
ISSUER = "https://kubernetes.default.svc.cluster.local"
MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

admin_config = client.Configuration()
config.load_kube_config(config_file=KUBECONFIG, client_configuration=admin_config)
admin = client.ApiClient(admin_config)
core = client.CoreV1Api(admin)


def as_token(token):
    """A client that presents only `token` (no client certificate)."""
    configuration = client.Configuration()
    configuration.host = admin_config.host
    configuration.ssl_ca_cert = admin_config.ssl_ca_cert
    configuration.api_key = {"authorization": "Bearer " + token}
    return client.CoreV1Api(client.ApiClient(configuration))


def status_of(call):
    """The HTTP status a call answers."""
    try:
        call()
        return 200
    except ApiException as error:
        return error.status


def authenticates(token):
    """Any answer but 401 (the authorizer may still say 403)."""
    return status_of(lambda: as_token(token).read_namespace(NS)) in (200, 403)


def request_token(**spec):
    body = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(**spec))
    return core.create_namespaced_service_account_token("default", NS, body)


assert authenticates(KUBECTL_TOKEN), "kubectl's token is refused"

answer = request_token(audiences=[])
assert answer.spec.audiences == [ISSUER], answer.spec
assert answer.spec.expiration_seconds == 3600, answer.spec
assert answer.status.expiration_timestamp is not None
token = answer.status.token
assert authenticates(token)

header, payload, signature = token.split(".")
tampered = ".".join([header, payload, ("A" if signature[0] != "A" else "B") + signature[1:]])
assert status_of(lambda: as_token(tampered).read_namespace(NS)) == 401
other_audience = request_token(audiences=["https://vault.example"]).status.token
assert status_of(lambda: as_token(other_audience).read_namespace(NS)) == 401
assert status_of(lambda: as_token("not-a-token").read_namespace(NS)) == 401

try:
    request_token(audiences=[], expiration_seconds=599)
    raise AssertionError("a 599-second token was issued")
except ApiException as error:
    assert error.status == 422, error
    assert "spec.expirationSeconds" in error.body, error.body

reviews = client.AuthenticationV1Api(admin)
review = reviews.create_token_review(
    client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
)
user = review.status.user
assert review.status.authenticated, review.status
assert user.username == f"system:serviceaccount:{NS}:default", user
assert "system:serviceaccounts" in user.groups and f"system:serviceaccounts:{NS}" in user.groups
assert review.status.audiences == [ISSUER], review.status
refused = reviews.create_token_review(
    client.V1TokenReview(spec=client.V1TokenReviewSpec(token=tampered))
)
assert not refused.status.authenticated and refused.status.error, refused.status


def pod(name, **spec):
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "skiff/busybox"}], **spec},
    }


created = core.create_namespaced_pod(NS, pod("injected"))
assert created.spec.service_account_name == "default", created.spec
volumes = [v for v in created.spec.volumes if v.name.startswith("kube-api-access-")]
assert len(volumes) == 1, created.spec.volumes
sources = volumes[0].projected.sources
assert sources[0].service_account_token.expiration_seconds == 3607
assert sources[0].service_account_token.path == "token"
assert sources[1].config_map.name == "kube-root-ca.crt"
assert sources[2].downward_api.items[0].field_ref.field_path == "metadata.namespace"
mount = created.spec.containers[0].volume_mounts[0]
assert (mount.name, mount.mount_path, mount.read_only) == (volumes[0].name, MOUNT, True)

plain = core.create_namespaced_pod(NS, pod("plain", automountServiceAccountToken=False))
assert not plain.spec.volumes, plain.spec.volumes

try:
    core.create_namespaced_pod(NS, pod("orphan", serviceAccountName="nope"))
    raise AssertionError("a pod of a missing ServiceAccount was created")
except ApiException as error:
    assert error.status == 403, error
    expected = f'error looking up service account {NS}/nope: serviceaccount \\"nope\\" not found'
    assert expected in error.body, error.body

bound_ref = client.V1BoundObjectReference(
    api_version="v1", kind="Pod", name="injected", uid=created.metadata.uid
)
bound = request_token(audiences=[], bound_object_ref=bound_ref).status.token
assert authenticates(bound)
bound_review = reviews.create_token_review(
    client.V1TokenReview(spec=client.V1TokenReviewSpec(token=bound))
).status
assert bound_review.user.extra["authentication.kubernetes.io/pod-name"] == ["injected"]
core.delete_namespaced_pod("injected", NS, grace_period_seconds=0)
assert status_of(lambda: as_token(bound).read_namespace(NS)) == 401

print("python client: service-account tokens checked")

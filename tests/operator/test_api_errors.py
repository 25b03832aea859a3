"""Every API failure the operator logs or reports names its status, reason, request and the API's message."""

from __future__ import annotations

import aiohttp
import kopf
import pytest

from tests.operator.conftest import EmulatedCluster
from warmpool_operator.kinds import (
    SERVICES,
    ApiError,
    Forbidden,
    Unreachable,
    describe,
    request_resource,
    request_verb,
)
from warmpool_operator.kube import KubeApi, Timeouts

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("method", "path", "verb", "resource"),
    [
        ("POST", "/api/v1/namespaces/a/services", "create", "services"),
        ("GET", "/api/v1/namespaces/a/services", "list", "services"),
        ("GET", "/api/v1/namespaces/a/services/x", "get", "services"),
        ("GET", "/api/v1/pods", "list", "pods"),
        ("PATCH", "/apis/apps/v1/namespaces/a/deployments/x", "patch", "deployments.apps"),
        ("PATCH", "/apis/tensorwasm.dev/v1alpha1/namespaces/a/warmpools/x/status", "patch",
         "warmpools.tensorwasm.dev/status"),
        ("DELETE", "/apis/coordination.k8s.io/v1/namespaces/a/leases/l", "delete", "leases.coordination.k8s.io"),
    ],
)
def test_a_request_names_its_rbac_verb_and_resource(method: str, path: str, verb: str, resource: str) -> None:
    assert (request_verb(method, path), request_resource(path)) == (verb, resource)


def test_an_api_error_carries_status_reason_request_and_message() -> None:
    error = Forbidden(403, "Forbidden", "services is forbidden", method="POST", path="/api/v1/namespaces/a/services")
    assert str(error) == "403 Forbidden on POST /api/v1/namespaces/a/services: services is forbidden"
    assert (error.verb, error.resource) == ("create", "services")


def test_a_refusal_names_what_rbac_refused_even_when_the_request_was_another_verb() -> None:
    error = Forbidden(403, "Forbidden", 'services is forbidden: User "u" cannot create resource "services" in API '
                      'group "" in the namespace "a"', method="PATCH", path="/api/v1/namespaces/a/services/x")
    assert (error.verb, error.resource) == ("create", "services")
    apps = Forbidden(403, "Forbidden", 'cannot patch resource "deployments" in API group "apps"', method="PATCH",
                     path="/apis/apps/v1/namespaces/a/deployments/x")
    assert (apps.verb, apps.resource) == ("patch", "deployments.apps")


def test_an_api_error_without_a_message_says_so() -> None:
    assert str(ApiError(500, "", "")) == "500 error: (no message from the API server)"


@pytest.mark.parametrize(
    ("exc", "shown"),
    [
        (TimeoutError(), "TimeoutError"),
        (ConnectionResetError("reset by peer"), "ConnectionResetError: reset by peer"),
        (Unreachable("GET", "/api/v1/pods", "TimeoutError"),
         "API server unreachable on GET /api/v1/pods: TimeoutError"),
    ],
)
def test_no_failure_is_described_by_an_empty_string(exc: BaseException, shown: str) -> None:
    assert describe(exc) == shown


def test_the_cause_is_kept() -> None:
    outer = RuntimeError("cannot list")
    outer.__cause__ = OSError("connection refused")
    assert describe(outer) == "RuntimeError: cannot list (caused by OSError: connection refused)"


@pytest.mark.component
async def test_an_api_server_that_is_not_there_is_named_with_the_request() -> None:
    api = KubeApi(kopf.ConnectionInfo(server="http://127.0.0.1:9"), timeouts=Timeouts(2.0, 1.0))
    try:
        with pytest.raises(Unreachable) as caught:
            await api.list(SERVICES, "a")
    finally:
        await api.close()
    assert str(caught.value).startswith("API server unreachable on GET /api/v1/namespaces/a/services: ")
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)
    assert "ConnectionRefusedError" in str(caught.value)


@pytest.mark.component
async def test_a_refusal_of_the_emulated_api_names_the_request(cluster: EmulatedCluster) -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "twice"}, "spec": {"ports": []}}
    await cluster.api.create(SERVICES, "pools", service)
    with pytest.raises(ApiError) as caught:
        await cluster.api.create(SERVICES, "pools", service)
    assert str(caught.value).startswith("409 ")
    assert " on POST /api/v1/namespaces/pools/services: The object already exists" in str(caught.value)

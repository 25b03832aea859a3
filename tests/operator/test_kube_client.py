"""The API adapter against a real HTTP server on loopback: credentials, re-login, refusals, timeouts, counting."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import ssl
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import kopf
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry, Counter

from warmpool_operator.kinds import CONFIGMAPS, DEPLOYMENTS, SERVICES, ApiError, Invalid, NotFound, Unreachable
from warmpool_operator.kube import APPLY_PATCH, MERGE_PATCH, KubeApi, Timeouts
from warmpool_operator.metrics import OperatorMetrics

pytestmark = pytest.mark.component

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    """What the server received, request by request."""

    requests: list[tuple[str, str, str, dict[str, str]]] = field(default_factory=list)
    """(method, path with query, body, selected headers)."""


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def recording(seen: Seen, answer: Callable[[web.Request, str], web.Response]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.text()
        headers = {k: request.headers[k] for k in ("Authorization", "Content-Type", "User-Agent")
                   if k in request.headers}
        seen.requests.append((request.method, request.path_qs, body, headers))
        return answer(request, body)

    return handler


class Requests:
    """The operator's request counter in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.counter: Counter = OperatorMetrics.create(self.registry).api_requests

    def __call__(self, verb: str, resource: str, code: str) -> float | None:
        labels = {"verb": verb, "resource": resource, "code": code}
        return self.registry.get_sample_value("warmpool_operator_api_requests_total", labels)


async def test_requests_carry_the_credentials_and_bodies_of_each_verb(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    seen = Seen()
    server = await serve(recording(seen, lambda request, body: web.json_response(
        {"items": [{"metadata": {"name": "a"}}]} if request.method == "GET" else json.loads(body or "{}"))))
    requests = Requests()
    api = KubeApi(kopf.ConnectionInfo(server=server, token="t0k"), timeouts=Timeouts(5.0, 2.0),
                  requests=requests.counter)
    try:
        listed = await api.list(SERVICES, "ns", label_selector="app=x,tier in (a,b)", limit=3)
        created = await api.create(CONFIGMAPS, "ns", {"metadata": {"name": "c"}, "data": {"k": "v"}})
        applied = await api.apply(SERVICES, "ns", "s", {"spec": {"ports": [{"port": 80}]}})
        patched = await api.scale_deployment("ns", "d", 3)
    finally:
        await api.close()
    assert listed == [{"metadata": {"name": "a"}}]
    assert created == {"metadata": {"name": "c"}, "data": {"k": "v"}}
    assert applied == {"spec": {"ports": [{"port": 80}]}}
    assert patched == {"spec": {"replicas": 3}}
    (lst, post, apply, patch) = seen.requests
    assert lst[0] == "GET"
    assert lst[1].startswith("/api/v1/namespaces/ns/services?")
    assert parse_qs(urlsplit(lst[1]).query) == {"labelSelector": ["app=x,tier in (a,b)"], "limit": ["3"]}
    assert post[:2] == ("POST", "/api/v1/namespaces/ns/configmaps?fieldManager=warmpool-operator")
    assert apply[:2] == ("PATCH", "/api/v1/namespaces/ns/services/s?fieldManager=warmpool-operator&force=true")
    assert apply[3]["Content-Type"] == APPLY_PATCH
    assert json.loads(apply[2]) == {"spec": {"ports": [{"port": 80}]}}
    assert patch[1] == DEPLOYMENTS.path("ns", "d") + "?fieldManager=warmpool-operator"
    assert patch[3]["Content-Type"] == MERGE_PATCH
    assert all(r[3]["Authorization"] == "Bearer t0k" for r in seen.requests)
    assert all(r[3]["User-Agent"].startswith("warmpool-operator/") for r in seen.requests)
    assert requests("list", "services", "200") == 1
    assert requests("create", "configmaps", "200") == 1
    assert requests("apply", "services", "200") == 1
    assert requests("patch", "deployments.apps", "200") == 1


async def test_rejected_credentials_log_in_again_once(serve: Callable[[Handler], Awaitable[str]]) -> None:
    seen = Seen()

    def answer(request: web.Request, body: str) -> web.Response:
        if request.headers.get("Authorization") != "Bearer fresh":
            return web.json_response({"kind": "Status", "reason": "Unauthorized", "message": "Unauthorized"},
                                     status=401)
        return web.json_response({"metadata": {"name": "x"}})

    server = await serve(recording(seen, answer))
    logins: list[str] = []

    async def login() -> kopf.ConnectionInfo:
        logins.append("again")
        return kopf.ConnectionInfo(server=server, token="fresh")

    async def refuse() -> kopf.ConnectionInfo:
        logins.append("refused")
        return kopf.ConnectionInfo(server=server, token="still-wrong")

    requests = Requests()
    api = KubeApi(kopf.ConnectionInfo(server=server, token="stale"), login=login, timeouts=Timeouts(5.0, 2.0),
                  requests=requests.counter)
    revoked = KubeApi(kopf.ConnectionInfo(server=server, token="revoked"), login=refuse,
                      timeouts=Timeouts(5.0, 2.0), requests=requests.counter)
    try:
        assert await api.get(SERVICES, "ns", "x") == {"metadata": {"name": "x"}}
        with pytest.raises(ApiError) as caught:
            await revoked.get(SERVICES, "ns", "x")
    finally:
        await api.close()
        await revoked.close()
    assert [r[3]["Authorization"] for r in seen.requests] == [
        "Bearer stale", "Bearer fresh", "Bearer revoked", "Bearer still-wrong"]
    assert logins == ["again", "refused"]
    assert caught.value.status == 401
    assert str(caught.value).startswith("401 Unauthorized on GET /api/v1/namespaces/ns/services/x: ")
    assert requests("get", "services", "401") == 3


async def test_refusals_name_status_reason_request_and_the_api_servers_message(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    def answer(request: web.Request, body: str) -> web.Response:
        if request.method == "POST":
            return web.json_response({"kind": "Status", "reason": "Invalid",
                                      "message": 'Service "s" is invalid: spec.ports: Required value'}, status=422)
        if request.method in ("DELETE", "PATCH"):
            return web.json_response({"kind": "Status", "reason": "NotFound", "message": "gone"}, status=404)
        return web.Response(status=503, text="upstream connect error\n")

    server = await serve(recording(Seen(), answer))
    api = KubeApi(kopf.ConnectionInfo(server=server), timeouts=Timeouts(5.0, 2.0))
    try:
        with pytest.raises(Invalid) as invalid:
            await api.create(SERVICES, "ns", {"metadata": {"name": "s"}})
        assert await api.delete(SERVICES, "ns", "s") is False
        with pytest.raises(NotFound):
            await api.merge_patch(SERVICES, "ns", "s", {"metadata": {"labels": {"a": "b"}}})
        with pytest.raises(ApiError) as unavailable:
            await api.list(SERVICES, "ns")
    finally:
        await api.close()
    assert str(invalid.value) == ('422 Invalid on POST /api/v1/namespaces/ns/services: '
                                  'Service "s" is invalid: spec.ports: Required value')
    assert str(unavailable.value) == ("503 Service Unavailable on GET /api/v1/namespaces/ns/services: "
                                      "upstream connect error")


async def test_a_server_that_never_answers_is_unreachable_within_the_request_timeout(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response({})

    server = await serve(hang)
    requests = Requests()
    api = KubeApi(kopf.ConnectionInfo(server=server), timeouts=Timeouts(0.5, 1.0), requests=requests.counter)
    try:
        with pytest.raises(Unreachable) as caught:
            await api.get(SERVICES, "ns", "x")
    finally:
        release.set()
        await api.close()
    assert str(caught.value).startswith("API server unreachable on GET /api/v1/namespaces/ns/services/x: ")
    assert "(no complete answer within 0.5s)" in str(caught.value)
    assert requests("get", "services", "<error>") == 1


def _issue(name: str, issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None, *,
           ip: str | None = None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A certificate for `name`, self-signed as a CA without an issuer."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=1)))
    if issuer is None:
        builder = builder.issuer_name(subject).add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                                             critical=True)
        return key, builder.sign(key, hashes.SHA256())
    if ip is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    return key, builder.issuer_name(issuer[1].subject).sign(issuer[0], hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _private_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("warmpool-operator-*"))


async def test_client_certificate_and_ca_data_authenticate_over_tls(tmp_path: Path) -> None:
    """Credentials as a kubeconfig carries them (base64 data): the client certificate and key go to private
    files only while the client lives; a CA that did not sign the server's certificate fails as unreachable."""
    ca = _issue("test-ca")
    server_key, server_cert = _issue("127.0.0.1", ca, ip="127.0.0.1")
    client_key, client_cert = _issue("operator", ca)
    (tmp_path / "server.crt").write_bytes(_pem(server_cert))
    (tmp_path / "server.key").write_bytes(_key_pem(server_key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=_pem(ca[1]).decode())

    async def whoami(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(item for rdn in (peer or {}).get("subject", ()) for item in rdn)
        return web.json_response({"metadata": {"name": subject.get("commonName")}})

    app = web.Application()
    app.router.add_get("/{tail:.*}", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    server = f"https://127.0.0.1:{runner.addresses[0][1]}"
    b64 = base64.b64encode
    trusted = kopf.ConnectionInfo(server=server, ca_data=b64(_pem(ca[1])).decode(),
                                  certificate_data=b64(_pem(client_cert)).decode(),
                                  private_key_data=b64(_key_pem(client_key)).decode())
    stranger = kopf.ConnectionInfo(server=server, ca_data=_pem(_issue("other-ca")[1]).decode(),
                                   certificate_data=_pem(client_cert).decode(),
                                   private_key_data=_key_pem(client_key).decode())
    before = _private_dirs()
    api = KubeApi(trusted, timeouts=Timeouts(5.0, 2.0))
    other = KubeApi(stranger, timeouts=Timeouts(5.0, 2.0))
    try:
        found = await api.get(SERVICES, "ns", "whoami")
        made = _private_dirs() - before
        modes = {stat.S_IMODE(p.stat().st_mode) for d in made for p in (d, *d.iterdir())}
        with pytest.raises(Unreachable) as refused:
            await other.get(SERVICES, "ns", "whoami")
    finally:
        await api.close()
        await other.close()
        await runner.cleanup()
    assert found == {"metadata": {"name": "operator"}}
    assert made
    assert modes == {0o700, 0o600}
    assert not made & _private_dirs()
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)


async def test_a_re_login_lets_requests_under_way_finish_on_the_old_session(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    slow_arrived, release = asyncio.Event(), asyncio.Event()

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.match_info["tail"].endswith("/slow"):
            slow_arrived.set()
            await release.wait()
            return web.json_response({"metadata": {"name": "slow"}})
        if request.headers.get("Authorization") != "Bearer fresh":
            return web.json_response({"kind": "Status", "reason": "Unauthorized"}, status=401)
        return web.json_response({"metadata": {"name": "quick"}})

    server = await serve(answer)

    async def login() -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=server, token="fresh")

    api = KubeApi(kopf.ConnectionInfo(server=server, token="stale"), login=login, timeouts=Timeouts(5.0, 2.0))
    try:
        slow = asyncio.create_task(api.get(SERVICES, "ns", "slow"))
        await slow_arrived.wait()
        quick = await api.get(SERVICES, "ns", "quick")
        release.set()
        assert await slow == {"metadata": {"name": "slow"}}
    finally:
        release.set()
        await api.close()
    assert quick == {"metadata": {"name": "quick"}}

"""Handlers of `warmpool module push|inspect`: read the inputs, talk to the registry, say what happened."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from warmpool.module.artifact import MANIFEST_MEDIA_TYPE, ArtifactError, build_artifact, wasm_layer
from warmpool.module.credentials import Credentials, CredentialsError, read_password, resolve_credentials
from warmpool.module.distribution import DistributionClient, RegistryError, as_json
from warmpool.module.manifest import ManifestError, default_name, render, warmpool_document
from warmpool.module.reference import BadReference, OciReference, parse_reference
from warmpool.module.wasm_info import ModuleInfo, NotAModule, inspect_module
from warmpool_contract import DEFAULT_MAX_MODULE_BYTES

DEFAULT_TAG = "latest"
_FAILURES = (BadReference, CredentialsError, RegistryError, ArtifactError, ManifestError, NotAModule, OSError)


@dataclass(frozen=True)
class Login:
    """What the user said about credentials; resolved against the registry's host once it is known."""

    username: str | None = None
    password_stdin: bool = False
    docker_config: Path | None = None


def _credentials(login: Login, registry: str, stdin: TextIO, environ: Mapping[str, str]) -> Credentials | None:
    if login.password_stdin and login.username is None:
        raise CredentialsError("--password-stdin needs --username")
    password = read_password(stdin) if login.password_stdin else None
    return resolve_credentials(registry=registry, username=login.username, password=password,
                               docker_config=login.docker_config, environ=environ)


def _fail(command: str, exc: BaseException, err: TextIO) -> int:
    message = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.strerror else str(exc)
    print(f"warmpool module {command}: {message}", file=err)
    return 1


def publish(data: bytes, reference: OciReference, *, title: str, insecure: bool,
            credentials: Credentials | None) -> str:
    """Push module bytes as a Wasm artifact under reference's tag; return the manifest digest."""
    if not reference.tag:
        raise BadReference(f"{reference}: pushing needs a tag")
    artifact = build_artifact(data, title=title, created=dt.datetime.now(dt.UTC))
    with DistributionClient(reference.registry, insecure=insecure, credentials=credentials) as client:
        client.push_blob(reference.path, artifact.config)
        client.push_blob(reference.path, artifact.module)
        return client.push_manifest(reference.path, reference.tag, artifact.manifest, MANIFEST_MEDIA_TYPE)


def push(
    *, file: Path, target: str, tenant: str, name: str | None, insecure: bool, pull_secret: str | None,
    login: Login, stdin: TextIO | None = None, out: TextIO | None = None, err: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Push FILE as a Wasm artifact and print a WarmPool that pins it."""
    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    try:
        reference = parse_reference(target)
        if reference.digest:
            raise BadReference(f"push to a tag, not a digest: {target!r} (the digest is computed from the module)")
        reference = OciReference(registry=reference.registry, path=reference.path, tag=reference.tag or DEFAULT_TAG)
        data = file.read_bytes()
        info = inspect_module(data, str(file))
        document = warmpool_document(name=name or default_name(reference), tenant=tenant, sha256=info.sha256,
                                     reference=reference, insecure=insecure, pull_secret=pull_secret)
        credentials = _credentials(login, reference.registry, stdin, os.environ if environ is None else environ)
        digest = publish(data, reference, title=file.name, insecure=insecure, credentials=credentials)
    except _FAILURES as exc:
        return _fail("push", exc, err)
    pinned = reference.with_digest(digest)
    document["spec"]["module"]["source"]["oci"]["reference"] = digest
    if info.size > DEFAULT_MAX_MODULE_BYTES:
        print(f"warmpool module push: note: the module is {info.size} bytes, over the runtime's default limit of "
              f"{DEFAULT_MAX_MODULE_BYTES}; set spec.limits.maxModuleBytes", file=err)
    for refused in info.refused_imports:
        print(f"warmpool module push: warning: the module imports {refused.module}::{refused.name}, which the "
              f"runtime does not provide: it will refuse to load it", file=err)
    print(f"pushed {reference} ({info.size} bytes, module sha256:{info.sha256}, manifest {digest})", file=err)
    out.write(render(document, [f"WarmPool for {pinned}", "Apply with: kubectl apply -f <this file>"]))
    return 0


def _fetch(reference: OciReference, *, insecure: bool, credentials: Credentials | None,
           max_bytes: int) -> tuple[bytes, str]:
    """The module bytes an OCI reference names, and the manifest digest."""
    with DistributionClient(reference.registry, insecure=insecure, credentials=credentials) as client:
        manifest = client.get_manifest(reference.path, reference.reference or DEFAULT_TAG, (MANIFEST_MEDIA_TYPE,))
        layer = wasm_layer(as_json(manifest.body, f"manifest of {reference}"), f"manifest of {reference}")
        if layer.size > max_bytes:
            raise RegistryError(f"registry {reference.registry}: the module of {reference} is {layer.size} bytes, "
                                f"over the {max_bytes}-byte limit (--max-bytes)")
        data = client.get_blob(reference.path, layer.digest, max_bytes=max_bytes)
    return data, manifest.digest


def describe(info: ModuleInfo, origin: str, manifest_digest: str | None) -> str:
    lines = [f"module    {origin}"]
    if manifest_digest:
        lines.append(f"manifest  {manifest_digest}")
    lines += [f"sha256    {info.sha256}", f"size      {info.size} bytes", f"exports   {len(info.exports)}"]
    width = max((len(e.name) for e in info.exports), default=0)
    lines += [f"  {e.name:<{width}}  {e.kind:<6}  {e.signature:<28}  {e.role}" for e in info.exports]
    lines.append(f"imports   {len(info.imports)}")
    for i in info.imports:
        status = "provided (WASI preview 1)" if i.provided else "NOT provided: the runtime refuses this module"
        lines.append(f"  {i.module}::{i.name}  {i.kind}  {i.signature}  {status}")
    handlers = [e.name for e in info.abi_functions if e.role.startswith("bytes handler")]
    numeric = [e.name for e in info.abi_functions if e.role.startswith("numeric")]
    lines.append(f"ABI       numeric exports: {', '.join(numeric) or 'none'}; "
                 f"bytes handlers: {', '.join(handlers) or 'none'}")
    return "\n".join(lines) + "\n"


def inspect(
    *, target: str, insecure: bool, login: Login, max_bytes: int, as_json_output: bool,
    stdin: TextIO | None = None, out: TextIO | None = None, err: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Describe a local .wasm file or the module an OCI reference names."""
    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    manifest_digest: str | None = None
    try:
        local = Path(target)
        if local.is_file():
            origin = str(local)
            data = local.read_bytes()
        else:
            reference = parse_reference(target)
            credentials = _credentials(login, reference.registry, stdin, os.environ if environ is None else environ)
            data, manifest_digest = _fetch(reference, insecure=insecure, credentials=credentials, max_bytes=max_bytes)
            origin = str(reference)
        info = inspect_module(data, origin)
    except _FAILURES as exc:
        return _fail("inspect", exc, err)
    if as_json_output:
        document = {"source": origin, "manifestDigest": manifest_digest, "sha256": info.sha256, "size": info.size,
                    "exports": [asdict(e) for e in info.exports], "imports": [asdict(i) for i in info.imports],
                    "abi": [e.name for e in info.abi_functions]}
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        out.write(describe(info, origin, manifest_digest))
    return 0

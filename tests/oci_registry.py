"""A real OCI registry (CNCF Distribution, built from the Go module proxy on first use) for tests: a session fixture."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.gobuilds import ensure_registry
from warmpool.dev.build import BuildError
from warmpool.dev.registry import (
    RegistryAccess,
    RegistryError,
    RegistryFiles,
    docker_config,
    start_registry,
    stop_registry,
    write_private,
)
from warmpool.module.commands import publish
from warmpool.module.credentials import Credentials
from warmpool.module.reference import OciReference


@dataclass(frozen=True)
class OciRegistry:
    """A running registry on 127.0.0.1 with htpasswd auth (plain HTTP: clients need `insecure`)."""

    host: str
    """127.0.0.1:PORT, as OCI references and docker config `auths` keys name it."""
    username: str
    password: str
    files: RegistryFiles

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def docker_config(self, *, password: str | None = None) -> dict[str, object]:
        """A docker config.json document logging in to this registry (with another password, if given)."""
        return docker_config(RegistryAccess(host=self.host, username=self.username,
                                            password=self.password if password is None else password))

    def push_module(self, data: bytes, path: str, tag: str = "v1") -> OciReference:
        """Push module bytes as a CNCF Wasm artifact to `path:tag` here; the reference carries the manifest digest."""
        reference = OciReference(registry=self.host, path=path, tag=tag)
        credentials = Credentials(username=self.username, password=self.password, origin="the test registry")
        digest = publish(data, reference, title="module.wasm", insecure=True, credentials=credentials)
        return reference.with_digest(digest)

    def write_docker_config(self, directory: Path, *, password: str | None = None) -> Path:
        """Write `directory/config.json` (mode 0600) and return its path; DOCKER_CONFIG=directory uses it."""
        path = directory / "config.json"
        write_private(path, json.dumps(self.docker_config(password=password)))
        return path


@contextlib.contextmanager
def running_registry(root: Path, pytestconfig: pytest.Config | None = None) -> Iterator[OciRegistry]:
    """A registry storing under `root` for the `with` block; a cold build's progress goes to the terminal."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager") if pytestconfig else None

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            binary = ensure_registry(log=say)
    except BuildError as exc:
        pytest.fail(f"cannot build the OCI registry: {exc}")
    files = RegistryFiles.under(root)
    try:
        access = start_registry(binary=binary, files=files)
    except RegistryError as exc:
        pytest.fail(f"the OCI registry did not start: {exc}")
    try:
        yield OciRegistry(host=access.host, username=access.username, password=access.password, files=files)
    finally:
        stop_registry(files)


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[OciRegistry]:
    """One registry for the whole session; tests use distinct repository names."""
    with running_registry(tmp_path_factory.mktemp("oci-registry"), pytestconfig) as registry:
        yield registry

"""A CNCF Distribution registry on loopback with htpasswd auth: its files, start, readiness and stop."""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from warmpool.dev import procs

HOST = "127.0.0.1"
DEFAULT_USERNAME = "warmpool"
REALM = "warmpool-dev-registry"
READY_TIMEOUT_S = 60.0

Log = Callable[[str], None]


class RegistryError(RuntimeError):
    """The registry did not start or answer; the message says why and shows its log tail."""


@dataclass(frozen=True)
class RegistryFiles:
    """Where one registry keeps its configuration, credentials, blobs, log and PID."""

    root: Path
    pid: Path
    log: Path

    @classmethod
    def under(cls, root: Path) -> RegistryFiles:
        """Everything in one directory."""
        return cls(root=root, pid=root / "registry.pid", log=root / "registry.log")

    @property
    def config(self) -> Path:
        return self.root / "config.yml"

    @property
    def htpasswd(self) -> Path:
        return self.root / "htpasswd"

    @property
    def credentials(self) -> Path:
        """`{"url", "host", "username", "password"}`, mode 0600."""
        return self.root / "credentials.json"

    @property
    def docker_config_dir(self) -> Path:
        """A DOCKER_CONFIG directory whose config.json logs in to this registry."""
        return self.root / "docker-config"

    @property
    def storage(self) -> Path:
        return self.root / "storage"



@dataclass(frozen=True)
class RegistryAccess:
    """How to reach and log in to a running registry."""

    host: str
    """127.0.0.1:PORT, as an OCI reference names it."""
    username: str
    password: str

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def as_json(self) -> dict[str, str]:
        return {"url": self.url, "host": self.host, "username": self.username, "password": self.password}


def generate_password() -> str:
    return secrets.token_urlsafe(24)


def htpasswd_line(username: str, password: str) -> str:
    """One htpasswd entry with a bcrypt hash, the only kind the registry accepts."""
    if ":" in username or not username:
        raise ValueError(f"registry user name {username!r} must be non-empty and have no ':'")
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    return f"{username}:{hashed}\n"


def registry_config(*, port: int, storage: Path, htpasswd: Path, http_secret: str) -> dict[str, Any]:
    """The registry's configuration document: loopback only, filesystem storage, htpasswd auth."""
    return {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"{HOST}:{port}", "secret": http_secret, "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "auth": {"htpasswd": {"realm": REALM, "path": str(htpasswd)}},
    }


def docker_config(access: RegistryAccess) -> dict[str, Any]:
    """A docker config.json document with this registry's credentials (as `docker login` writes it)."""
    token = base64.b64encode(f"{access.username}:{access.password}".encode()).decode()
    return {"auths": {access.host: {"auth": token}}}


def write_private(path: Path, text: str) -> None:
    """Write a file that only its owner can read (created 0600, never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


def registry_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The registry's environment: no REGISTRY_* overrides from the caller, no trace exporting."""
    env = {k: v for k, v in environ.items() if not k.startswith(("REGISTRY_", "OTEL_"))}
    env.update({"OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"})
    return env


def _v2_status(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/v2/", timeout=2) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def start_registry(
    *, binary: Path, files: RegistryFiles, username: str = DEFAULT_USERNAME, password: str | None = None,
    log: Log | None = None, timeout_s: float = READY_TIMEOUT_S,
) -> RegistryAccess:
    """Start the registry on a free loopback port and return once /v2/ asks for credentials."""
    say: Log = log or (lambda _line: None)
    if running(files):
        raise RegistryError(f"a registry already runs from {files.root} (PID file {files.pid})")
    password = password or generate_password()
    port = procs.free_port(HOST)
    access = RegistryAccess(host=f"{HOST}:{port}", username=username, password=password)
    files.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    files.storage.mkdir(parents=True, exist_ok=True)
    write_private(files.htpasswd, htpasswd_line(username, password))
    config = registry_config(port=port, storage=files.storage, htpasswd=files.htpasswd,
                             http_secret=secrets.token_hex(16))
    write_private(files.config, yaml.safe_dump(config, sort_keys=False))
    write_private(files.credentials, json.dumps(access.as_json(), indent=2) + "\n")
    write_private(files.docker_config_dir / "config.json", json.dumps(docker_config(access), indent=2) + "\n")
    say(f"starting the OCI registry on {access.url} (storage {files.storage})")
    record = procs.start_detached(
        [str(binary), "serve", str(files.config)], log=files.log, pid_file=files.pid,
        env=registry_env(os.environ), cwd=files.root,
    )
    deadline = time.monotonic() + timeout_s
    while (status := _v2_status(access.url)) != 401:
        if not procs.recorded_alive(record):
            raise RegistryError(f"the registry exited during startup\n--- last lines of {files.log} ---\n"
                                f"{procs.tail(files.log)}")
        if time.monotonic() > deadline:
            procs.stop(record)
            raise RegistryError(f"the registry at {access.url} did not ask for credentials after {timeout_s:.0f}s "
                                f"(last status {status})\n--- last lines of {files.log} ---\n{procs.tail(files.log)}")
        time.sleep(0.1)
    return access


def read_access(files: RegistryFiles) -> RegistryAccess:
    """The credentials a started registry recorded."""
    try:
        document = json.loads(files.credentials.read_text())
        return RegistryAccess(host=document["host"], username=document["username"], password=document["password"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RegistryError(f"no registry credentials at {files.credentials}: {exc}") from exc


def running(files: RegistryFiles) -> bool:
    record = procs.read_pid_file(files.pid)
    return record is not None and procs.recorded_alive(record)


def stop_registry(files: RegistryFiles, *, grace_s: float = 10.0) -> bool:
    """Stop the registry recorded in files.pid; False if none was running."""
    return procs.stop_pid_file(files.pid, grace_s=grace_s)

"""Go-built tools of the packaging tests (helm, kustomize): `go install` once into a per-version cache."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

BUILD_TIMEOUT_SECONDS = 1800
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
KUSTOMIZE_VERSION = "v5.8.2"
"""The newest kustomize 5 that the Go on this machine (1.26) can build; v5.8.3 needs Go 1.27."""


class ToolUnavailable(RuntimeError):
    """A tool is absent and cannot be built here; the message says what is missing."""


def cache_dir(name: str, version: str) -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/warmpool/<name>/<version>/`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "warmpool" / name / version


def ensure_go_tool(name: str, module: str, version: str) -> Path:
    """The cached binary, built with `go install module@version` when absent."""
    target = cache_dir(name, version) / name
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise ToolUnavailable(f"{name} {version} is not cached at {target} and `go` is not on PATH to build it")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two sessions (or a session and its background build) may want it at once: one builds, the other waits.
    with (target.parent / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        _install(go, name, module, version, target)
    return target


def _install(go: str, name: str, module: str, version: str, target: Path) -> None:
    staging = target.parent / f"build-{os.getpid()}"
    staging.mkdir(exist_ok=True)
    env = {**os.environ, "GOBIN": str(staging), "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"}
    try:
        result = subprocess.run(
            [go, "install", f"{module}@{version}"],
            env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS, check=False,
        )
        if result.returncode != 0:
            raise ToolUnavailable(f"go install {module}@{version} failed:\n{result.stderr[-4000:]}")
        # Moved into place only when complete: a concurrent or interrupted build never leaves half a binary.
        os.replace(staging / name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

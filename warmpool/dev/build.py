"""Build (or reuse from the cache) the kcluster binary from the Go module in tests/cluster/."""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parents[2] / "tests" / "cluster"
VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
PROGRESS_EVERY_S = 30.0

Log = Callable[[str], None]


class BuildError(RuntimeError):
    """The Go build failed or could not start; the message names the command and the error."""


@dataclass(frozen=True)
class GoToolchain:
    go: str
    """The go executable."""
    version: str
    """`go env GOVERSION`, e.g. go1.24.5."""
    platform: str
    """GOOS/GOARCH of the build output."""


@dataclass(frozen=True)
class BuildPlan:
    key: str
    """Cache key: a hash of go.mod, go.sum, the Go sources and the toolchain."""
    kube_version: str
    """The pinned k8s.io/kubernetes version, stamped into the binary."""
    output: Path
    """Where the cached binary lives."""
    command: tuple[str, ...]
    """The go build command, run in the source directory."""
    env: Mapping[str, str]
    """Environment overrides for the build."""


def kube_version_from_go_mod(go_mod: str) -> str:
    """The `k8s.io/kubernetes` version required by a go.mod."""
    match = re.search(r"^\s*k8s\.io/kubernetes\s+(v\d+\.\d+\.\d+\S*)", go_mod, re.MULTILINE)
    if match is None:
        raise BuildError("tests/cluster/go.mod does not require k8s.io/kubernetes")
    return match.group(1)


def cache_key(*, go_mod: bytes, go_sum: bytes, sources: Mapping[str, bytes], toolchain: str) -> str:
    """A stable hash of everything that determines the binary."""
    digest = hashlib.sha256()
    parts = [("go.mod", go_mod), ("go.sum", go_sum), *sorted(sources.items()), ("toolchain", toolchain.encode())]
    for name, data in parts:
        digest.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest()[:24]


def ldflags(kube_version: str, build_date: str) -> str:
    """Strip symbols and stamp the version that /version and `kubectl version` report."""
    major, minor = kube_version.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for package in VERSION_PACKAGES:
        values = {
            "gitVersion": kube_version,
            "gitMajor": major,
            "gitMinor": minor,
            "gitTreeState": "clean",
            "buildDate": build_date,
        }
        flags += [f"-X {package}.{name}={value}" for name, value in values.items()]
    return " ".join(flags)


def plan_build(
    *, source_dir: Path, toolchain: GoToolchain, cache_root: Path, build_date: str
) -> BuildPlan:
    """Decide the cache location and the exact build command from the sources on disk."""
    go_mod = (source_dir / "go.mod").read_bytes()
    go_sum = (source_dir / "go.sum").read_bytes()
    sources = {path.name: path.read_bytes() for path in sorted(source_dir.glob("*.go"))}
    key = cache_key(
        go_mod=go_mod, go_sum=go_sum, sources=sources, toolchain=f"{toolchain.version} {toolchain.platform}"
    )
    kube_version = kube_version_from_go_mod(go_mod.decode())
    output = cache_root / key / "kcluster"
    command = (
        toolchain.go, "build", "-v", "-trimpath",
        "-ldflags", ldflags(kube_version, build_date),
        "-o", str(output.with_name("kcluster.partial")), ".",
    )
    env = {"GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false -mod=readonly", "CGO_ENABLED": "0"}
    return BuildPlan(key=key, kube_version=kube_version, output=output, command=command, env=env)


def is_package_line(line: str) -> bool:
    """`go build -v` names each package it compiles on a line of its own; errors look different."""
    text = line.strip()
    return bool(text) and " " not in text and not text.startswith(("#", ".", "/"))


def default_cache_root(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".cache")
    return Path(base) / "warmpool" / "cluster"


def find_toolchain(environ: Mapping[str, str]) -> GoToolchain:
    go = shutil.which("go", path=environ.get("PATH")) or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise BuildError("the Go toolchain is needed to build the local control plane: `go` is not on PATH")
    try:
        out = subprocess.run(
            [go, "env", "GOVERSION", "GOOS", "GOARCH"],
            capture_output=True, text=True, check=True, env={**environ, "GOTOOLCHAIN": "local"},
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"`{go} env GOVERSION GOOS GOARCH` failed: {exc}") from exc
    return GoToolchain(go=go, version=out[0], platform=f"{out[1]}/{out[2]}")


def ensure_kcluster(
    *, source_dir: Path = SOURCE_DIR, cache_root: Path | None = None, log: Log | None = None
) -> Path:
    """The path of a kcluster binary for the current sources, compiling it on a cache miss."""
    say: Log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    environ = dict(os.environ)
    toolchain = find_toolchain(environ)
    root = cache_root or default_cache_root(environ)
    build_date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    plan = plan_build(source_dir=source_dir, toolchain=toolchain, cache_root=root, build_date=build_date)
    if plan.output.exists():
        return plan.output
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    # Several checkouts may build at once: one compiles, the others wait for its result.
    with (plan.output.parent / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if plan.output.exists():
            return plan.output
        _run_build(plan, source_dir=source_dir, environ=environ, say=say)
    return plan.output


def _count_packages(plan: BuildPlan, source_dir: Path, environ: Mapping[str, str]) -> int | None:
    try:
        listed = subprocess.run(
            [plan.command[0], "list", "-deps", "."], cwd=source_dir, capture_output=True, text=True,
            check=True, env={**environ, **plan.env},
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return len(listed.stdout.split())


def _run_build(plan: BuildPlan, *, source_dir: Path, environ: Mapping[str, str], say: Log) -> None:
    shown = " ".join(f"{k}={v!r}" for k, v in plan.env.items()) + " " + " ".join(
        repr(part) if " " in part else part for part in plan.command
    )
    say(f"kcluster: building Kubernetes {plan.kube_version} (cold builds take 10-25 minutes on 2 cores)")
    say(f"kcluster: in {source_dir}: {shown}")
    total = _count_packages(plan, source_dir, environ)
    started = time.monotonic()
    log_path = plan.output.with_name("build.log")
    tail: list[str] = []
    with log_path.open("w") as log_file:
        try:
            process = subprocess.Popen(
                plan.command, cwd=source_dir, env={**environ, **plan.env},
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
        except OSError as exc:
            raise BuildError(f"cannot start the Go build: {shown}: {exc}") from exc
        assert process.stdout is not None
        built = 0
        last_report = started
        for line in process.stdout:
            log_file.write(line)
            tail = [*tail[-39:], line.rstrip()]
            if is_package_line(line):
                built += 1
            now = time.monotonic()
            if now - last_report >= PROGRESS_EVERY_S:
                last_report = now
                of = f"/{total}" if total else ""
                say(f"kcluster: compiled {built}{of} packages, {int(now - started)}s elapsed")
        code = process.wait()
    if code != 0:
        details = "\n".join(line for line in tail if line)
        raise BuildError(f"the Go build failed (exit {code}): {shown}\n{details}\n(full log: {log_path})")
    plan.output.with_name("kcluster.partial").rename(plan.output)
    say(f"kcluster: built in {int(time.monotonic() - started)}s -> {plan.output}")

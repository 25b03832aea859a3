"""Build (or reuse from the cache) the Go binaries of the dev tooling: kcluster and the OCI registry."""

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

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR = REPO_ROOT / "tests" / "cluster"
REGISTRY_SOURCE_DIR = REPO_ROOT / "tools" / "registry"
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
class GoBinary:
    """One binary built from a Go module of this repository."""

    name: str
    """File name of the binary, and the prefix of its progress lines."""
    source_dir: Path
    """The Go module (go.mod, go.sum, and its own *.go files if any)."""
    package: str
    """What `go build` builds: "." or the import path of a main package the module requires."""
    cache_name: str
    """Directory under ${XDG_CACHE_HOME:-~/.cache}/warmpool holding one subdirectory per cache key."""
    version_module: str
    """The module whose required version the binary reports (read from go.mod)."""
    what: str
    """How progress lines name the build, e.g. "Kubernetes"."""
    cold_build_hint: str
    """How long a cold build takes, said before building."""
    stamp: Callable[[str, str], str]
    """ldflags from (version, build date)."""


@dataclass(frozen=True)
class BuildPlan:
    key: str
    """Cache key: a hash of go.mod, go.sum, the Go sources and the toolchain."""
    version: str
    """The pinned version of the binary's main module, as go.mod requires it."""
    output: Path
    """Where the cached binary lives."""
    command: tuple[str, ...]
    """The go build command, run in the source directory."""
    env: Mapping[str, str]
    """Environment overrides for the build."""

    @property
    def partial(self) -> Path:
        """Where the build writes before the binary is moved into place (never half a binary at output)."""
        return self.output.with_name(f"{self.output.name}.partial")


def required_version(go_mod: str, module: str) -> str:
    """The version of `module` that a go.mod requires (direct or indirect)."""
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\d+\.\d+\.\d+\S*)", go_mod, re.MULTILINE)
    if match is None:
        raise BuildError(f"go.mod does not require {module}")
    return match.group(1)


def kube_version_from_go_mod(go_mod: str) -> str:
    """The `k8s.io/kubernetes` version required by a go.mod."""
    return required_version(go_mod, "k8s.io/kubernetes")


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


def registry_ldflags(version: str, _build_date: str) -> str:
    """Strip symbols and stamp the version `registry --version` reports."""
    return f"-s -w -X github.com/distribution/distribution/v3/version.version={version}"


KCLUSTER = GoBinary(
    name="kcluster", source_dir=SOURCE_DIR, package=".", cache_name="cluster",
    version_module="k8s.io/kubernetes", what="Kubernetes",
    cold_build_hint="cold builds take 10-25 minutes on 2 cores", stamp=ldflags,
)
REGISTRY = GoBinary(
    name="registry", source_dir=REGISTRY_SOURCE_DIR,
    package="github.com/distribution/distribution/v3/cmd/registry", cache_name="registry",
    version_module="github.com/distribution/distribution/v3", what="the CNCF Distribution registry",
    cold_build_hint="cold builds take a few minutes on 2 cores", stamp=registry_ldflags,
)


def plan_go_build(
    binary: GoBinary, *, toolchain: GoToolchain, cache_root: Path, build_date: str, source_dir: Path | None = None
) -> BuildPlan:
    """Decide the cache location and the exact build command from the sources on disk."""
    source_dir = source_dir or binary.source_dir
    go_mod = (source_dir / "go.mod").read_bytes()
    go_sum = (source_dir / "go.sum").read_bytes()
    sources = {path.name: path.read_bytes() for path in sorted(source_dir.glob("*.go"))}
    key = cache_key(
        go_mod=go_mod, go_sum=go_sum, sources=sources, toolchain=f"{toolchain.version} {toolchain.platform}"
    )
    version = required_version(go_mod.decode(), binary.version_module)
    output = cache_root / key / binary.name
    command = (
        toolchain.go, "build", "-v", "-trimpath",
        "-ldflags", binary.stamp(version, build_date),
        "-o", str(output.with_name(f"{binary.name}.partial")), binary.package,
    )
    env = {"GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false -mod=readonly", "CGO_ENABLED": "0"}
    return BuildPlan(key=key, version=version, output=output, command=command, env=env)


def plan_build(*, source_dir: Path, toolchain: GoToolchain, cache_root: Path, build_date: str) -> BuildPlan:
    """The kcluster build plan for the Go module in source_dir."""
    return plan_go_build(
        KCLUSTER, toolchain=toolchain, cache_root=cache_root, build_date=build_date, source_dir=source_dir
    )


def is_package_line(line: str) -> bool:
    """`go build -v` names each package it compiles on a line of its own; errors look different."""
    text = line.strip()
    return bool(text) and " " not in text and not text.startswith(("#", ".", "/"))


def default_cache_root(environ: Mapping[str, str], name: str = KCLUSTER.cache_name) -> Path:
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".cache")
    return Path(base) / "warmpool" / name


def find_toolchain(environ: Mapping[str, str]) -> GoToolchain:
    go = shutil.which("go", path=environ.get("PATH")) or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise BuildError("the Go toolchain is needed to build the dev tools: `go` is not on PATH")
    try:
        out = subprocess.run(
            [go, "env", "GOVERSION", "GOOS", "GOARCH"],
            capture_output=True, text=True, check=True, env={**environ, "GOTOOLCHAIN": "local"},
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"`{go} env GOVERSION GOOS GOARCH` failed: {exc}") from exc
    return GoToolchain(go=go, version=out[0], platform=f"{out[1]}/{out[2]}")


def ensure_binary(binary: GoBinary, *, source_dir: Path | None = None, cache_root: Path | None = None,
                  log: Log | None = None) -> Path:
    """The path of the binary for the current sources, compiling it on a cache miss."""
    say: Log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    environ = dict(os.environ)
    toolchain = find_toolchain(environ)
    root = cache_root or default_cache_root(environ, binary.cache_name)
    source_dir = source_dir or binary.source_dir
    build_date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    plan = plan_go_build(binary, toolchain=toolchain, cache_root=root, build_date=build_date, source_dir=source_dir)
    if plan.output.exists():
        return plan.output
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    # Several checkouts may build at once: one compiles, the others wait for its result.
    with (plan.output.parent / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if plan.output.exists():
            return plan.output
        _run_build(binary, plan, source_dir=source_dir, environ=environ, say=say)
    return plan.output


def ensure_kcluster(
    *, source_dir: Path = SOURCE_DIR, cache_root: Path | None = None, log: Log | None = None
) -> Path:
    """The path of a kcluster binary for the current sources, compiling it on a cache miss."""
    return ensure_binary(KCLUSTER, source_dir=source_dir, cache_root=cache_root, log=log)


def ensure_registry(*, cache_root: Path | None = None, log: Log | None = None) -> Path:
    """The path of a CNCF Distribution registry binary, compiling it on a cache miss."""
    return ensure_binary(REGISTRY, cache_root=cache_root, log=log)


def _count_packages(plan: BuildPlan, package: str, source_dir: Path, environ: Mapping[str, str]) -> int | None:
    try:
        listed = subprocess.run(
            [plan.command[0], "list", "-deps", package], cwd=source_dir, capture_output=True, text=True,
            check=True, env={**environ, **plan.env},
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return len(listed.stdout.split())


def _run_build(
    binary: GoBinary, plan: BuildPlan, *, source_dir: Path, environ: Mapping[str, str], say: Log
) -> None:
    name = binary.name
    shown = " ".join(f"{k}={v!r}" for k, v in plan.env.items()) + " " + " ".join(
        repr(part) if " " in part else part for part in plan.command
    )
    say(f"{name}: building {binary.what} {plan.version} ({binary.cold_build_hint})")
    say(f"{name}: in {source_dir}: {shown}")
    total = _count_packages(plan, binary.package, source_dir, environ)
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
                say(f"{name}: compiled {built}{of} packages, {int(now - started)}s elapsed")
        code = process.wait()
    if code != 0:
        details = "\n".join(line for line in tail if line)
        raise BuildError(f"the Go build failed (exit {code}): {shown}\n{details}\n(full log: {log_path})")
    plan.partial.rename(plan.output)
    say(f"{name}: built in {int(time.monotonic() - started)}s -> {plan.output}")

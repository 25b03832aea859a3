"""The Go-built tools of the test run, built in the background while the first tiers run (`--go-prebuild`).

A cold checkout has to build kcluster, the OCI registry and Prometheus (and helm, kustomize) from Go
modules: tens of minutes on two cores. With `--go-prebuild` (the README's `make test` passes it) the
session starts one low-priority process that builds the tools the selected tests need, one after the
other in the order the tiers need them, while the tests run unit tier first, then component, then e2e.
One after the other, not at once: the tools share many packages (564 of the registry's 999 are also
Prometheus'), which the shared Go build cache compiles once for all; builds running at once each compile
them (measured: 106 of the first ~260 packages of a cold registry build were compiled twice beside a
cold Prometheus build), and two cores gain nothing from the overlap.

Tests get a tool through `ensure_*` below. If the background process is building it, they wait for its
verdict: a failed build fails them with the build's own message, without building again. If it has not
reached the tool yet, they build it themselves; the cache's file lock keeps the two from building one
tool twice.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packaging.gotools import KUSTOMIZE_MODULE, KUSTOMIZE_VERSION, ToolUnavailable, ensure_go_tool
from tests.packaging.helm import HELM_MODULE, HELM_VERSION
from warmpool.dev import build
from warmpool.dev.build import BuildError, Log

OPTION = "--go-prebuild"
TIERS = ("unit", "component", "e2e")
"""The order the tiers run in: fast feedback first, and the background builds get the time of the first two."""
POLL_S = 1.0


def _helm(_log: Log | None = None) -> Path:
    return ensure_go_tool("helm", HELM_MODULE, HELM_VERSION)


def _kustomize(_log: Log | None = None) -> Path:
    return ensure_go_tool("kustomize", KUSTOMIZE_MODULE, KUSTOMIZE_VERSION)


def _kcluster(log: Log | None = None) -> Path:
    return build.ensure_kcluster(log=log)


def _registry(log: Log | None = None) -> Path:
    return build.ensure_registry(log=log)


def _prometheus(log: Log | None = None) -> Path:
    return build.ensure_prometheus(log=log)


BUILDERS: dict[str, Callable[[Log | None], Path]] = {
    "helm": _helm, "kustomize": _kustomize, "registry": _registry, "kcluster": _kcluster, "prometheus": _prometheus,
}
"""In the order the tiers first need them: helm and kustomize (unit: the chart), the registry (component),
kcluster (every e2e test), Prometheus (one e2e module)."""


class BackgroundBuildFailed(BuildError, ToolUnavailable):
    """The session's background build of a tool failed; the message is the build's own.

    Both a BuildError and a ToolUnavailable: whoever handles a failed build of their own handles this."""


def needed_tools(items: Sequence[pytest.Item]) -> list[str]:
    """The tools the selected tests may need, in BUILDERS order."""
    tiers = {mark.name for item in items for mark in item.iter_markers() if mark.name in TIERS}
    packaging = any("tests/packaging/" in item.nodeid or item.nodeid.startswith("packaging/") for item in items)
    wanted = set()
    if packaging:
        wanted |= {"helm", "kustomize"}
    if tiers & {"component", "e2e"}:
        wanted.add("registry")
    if "e2e" in tiers:
        wanted |= {"kcluster", "prometheus", "helm"}
    return [name for name in BUILDERS if name in wanted]


def tier_rank(item: pytest.Item) -> int:
    for rank, tier in enumerate(TIERS):
        if item.get_closest_marker(tier) is not None:
            return rank
    return len(TIERS)


@dataclass(frozen=True)
class Verdict:
    """What the background process said of one tool: started, then built (with its path) or failed."""

    started: bool = False
    path: str | None = None
    error: str | None = None


def read_verdicts(status: Path) -> dict[str, Verdict]:
    """The status file's JSON lines, folded per tool (a torn last line is skipped: it is being written)."""
    verdicts: dict[str, Verdict] = {}
    try:
        lines = status.read_text().splitlines()
    except FileNotFoundError:
        return verdicts
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        name = event["tool"]
        if event["event"] == "start":
            verdicts[name] = Verdict(started=True)
        elif event["event"] == "built":
            verdicts[name] = Verdict(started=True, path=event["path"])
        else:
            verdicts[name] = Verdict(started=True, error=event["error"])
    return verdicts


class Background:
    """The session's background build process and where it reports."""

    def __init__(self, tools: Sequence[str], directory: Path, env: Mapping[str, str] | None = None) -> None:
        self.tools = tuple(tools)
        directory.mkdir(parents=True, exist_ok=True)
        self.status = directory / "status.jsonl"
        self.log = directory / "build.log"
        with self.log.open("wb") as out:
            # Below the tests (nice): the builds take what CPU the tests leave.
            self.process = subprocess.Popen(
                ["nice", "-n", "10", sys.executable, "-m", "tests.gobuilds", str(self.status), *self.tools],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=Path(__file__).resolve().parents[1], start_new_session=True, env=env,
            )

    def verdict(self, name: str, log: Log | None = None) -> Verdict:
        """The tool's verdict, waiting for it while the background process is building the tool."""
        said = False
        while True:
            found = read_verdicts(self.status).get(name, Verdict())
            if not found.started or found.path or found.error:
                return found
            if log is not None and not said:
                log(f"{name}: waiting for its background build (progress: {self.log})")
                said = True
            if self.process.poll() is not None:
                # Killed mid-build: no verdict will come; the caller builds it.
                return read_verdicts(self.status).get(name, Verdict())
            time.sleep(POLL_S)

    def stop(self) -> None:
        """Stop a build nobody waits for any more (the cache keeps what was compiled).

        Its directory goes when every tool was built; a failure's log stays."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
        verdicts = read_verdicts(self.status)
        if all(verdicts.get(name, Verdict()).path for name in self.tools):
            shutil.rmtree(self.status.parent, ignore_errors=True)


_running: dict[str, Background] = {}
"""The session's background build, under "session", while there is one."""


def ensure_through(background: Background | None, name: str, log: Log | None = None) -> Path:
    """The tool: the background's verdict on it when it is building it, else built (or found) here."""
    if background is not None and name in background.tools:
        verdict = background.verdict(name, log)
        if verdict.error is not None:
            raise BackgroundBuildFailed(
                f"the background build of {name} (started with the test session) failed:\n{verdict.error}\n"
                f"(its progress: {background.log})"
            )
    return BUILDERS[name](log)


def _through_background(name: str, log: Log | None) -> Path:
    return ensure_through(_running.get("session"), name, log)


def ensure_kcluster(*, log: Log | None = None) -> Path:
    return _through_background("kcluster", log)


def ensure_registry(*, log: Log | None = None) -> Path:
    return _through_background("registry", log)


def ensure_prometheus(*, log: Log | None = None) -> Path:
    return _through_background("prometheus", log)


def ensure_helm() -> Path:
    return _through_background("helm", None)


def ensure_kustomize() -> Path:
    return _through_background("kustomize", None)


# --- pytest hooks (imported by tests/conftest.py) ------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(OPTION, action="store_true", default=False,
                     help="build the Go tools the selected tests need in the background, tiers run in order")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Stable: within a tier, the usual file order.
    items.sort(key=tier_rank)


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.config.getoption(OPTION) or "session" in _running:
        return
    tools = needed_tools(session.items)
    if tools:
        background = _running["session"] = Background(tools, Path(tempfile.mkdtemp(prefix="warmpool-go-prebuild-")))
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"building in the background: {', '.join(tools)} (progress: {background.log})")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    background = _running.pop("session", None)
    if background is not None:
        background.stop()


# --- the background process: `python -m tests.gobuilds STATUS_FILE TOOL...` -----------------------------

def _events(tools: Sequence[str]) -> Iterator[dict[str, str]]:
    for name in tools:
        yield {"tool": name, "event": "start"}
        try:
            path = BUILDERS[name](lambda line: print(line, flush=True))
        except (BuildError, ToolUnavailable, OSError) as exc:
            yield {"tool": name, "event": "failed", "error": str(exc)}
        else:
            yield {"tool": name, "event": "built", "path": str(path)}


def main(argv: Sequence[str]) -> int:
    status, *tools = argv
    unknown = [name for name in tools if name not in BUILDERS]
    if unknown:
        print(f"unknown tools: {', '.join(unknown)} (known: {', '.join(BUILDERS)})", file=sys.stderr)
        return 2
    failed = 0
    with Path(status).open("a") as out:
        for event in _events(tools):
            out.write(json.dumps(event) + "\n")
            out.flush()
            failed += event["event"] == "failed"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

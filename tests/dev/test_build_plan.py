"""The Go build plans (kcluster, the OCI registry): cache key, version stamping and progress parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from warmpool.dev.build import (
    REGISTRY,
    BuildError,
    GoToolchain,
    cache_key,
    default_cache_root,
    is_package_line,
    kube_version_from_go_mod,
    ldflags,
    plan_build,
    plan_go_build,
    required_version,
)

pytestmark = pytest.mark.unit

GO_MOD = """module example/cluster

go 1.24.0

require (
\tk8s.io/component-base v0.34.4
\tk8s.io/kubernetes v1.34.4
)
"""


def _key(**changes: object) -> str:
    base: dict[str, object] = {
        "go_mod": b"mod", "go_sum": b"sum", "sources": {"main.go": b"package main"}, "toolchain": "go1.24 linux/amd64",
    }
    base.update(changes)
    return cache_key(**base)  # type: ignore[arg-type]


def test_cache_key_is_stable_and_covers_every_input() -> None:
    assert _key() == _key()
    variants = [
        _key(go_mod=b"mod2"),
        _key(go_sum=b"sum2"),
        _key(sources={"main.go": b"package main // changed"}),
        _key(sources={"main.go": b"package main", "etcd.go": b""}),
        _key(toolchain="go1.25 linux/amd64"),
    ]
    assert len({_key(), *variants}) == len(variants) + 1


def test_the_kubernetes_version_comes_from_go_mod() -> None:
    assert kube_version_from_go_mod(GO_MOD) == "v1.34.4"
    with pytest.raises(BuildError):
        kube_version_from_go_mod("module x\n")


def test_ldflags_strip_and_stamp_both_version_packages() -> None:
    flags = ldflags("v1.34.4", "2026-01-01T00:00:00Z")
    assert flags.startswith("-s -w ")
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {package}.gitVersion=v1.34.4" in flags
        assert f"-X {package}.gitMajor=1" in flags
        assert f"-X {package}.gitMinor=34" in flags


def test_plan_puts_the_binary_under_the_key_and_builds_reproducibly(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text(GO_MOD)
    (tmp_path / "go.sum").write_text("")
    (tmp_path / "main.go").write_text("package main\n")
    toolchain = GoToolchain(go="/usr/bin/go", version="go1.24.5", platform="linux/amd64")
    plan = plan_build(source_dir=tmp_path, toolchain=toolchain, cache_root=tmp_path / "cache", build_date="d")
    assert plan.output == tmp_path / "cache" / plan.key / "kcluster"
    assert plan.command[:4] == ("/usr/bin/go", "build", "-v", "-trimpath")
    assert plan.env["GOTOOLCHAIN"] == "local"
    assert plan.version == "v1.34.4"
    (tmp_path / "main.go").write_text("package main // edited\n")
    edited = plan_build(source_dir=tmp_path, toolchain=toolchain, cache_root=tmp_path / "cache", build_date="d")
    assert edited.key != plan.key


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("k8s.io/api/core/v1\n", True),
        ("runtime\n", True),
        ("# warmpool/tests/cluster\n", False),
        ("./main.go:12:2: undefined: x\n", False),
        ("go: downloading k8s.io/api v0.34.4\n", False),
        ("\n", False),
    ],
)
def test_progress_counts_only_package_lines(line: str, expected: bool) -> None:
    assert is_package_line(line) is expected


def test_required_version_reads_direct_and_indirect_requirements() -> None:
    go_mod = "module m\n\nrequire (\n\tgithub.com/distribution/distribution/v3 v3.1.2 // indirect\n)\n"
    assert required_version(go_mod, "github.com/distribution/distribution/v3") == "v3.1.2"
    assert required_version("module m\nrequire k8s.io/kubernetes v1.34.4\n", "k8s.io/kubernetes") == "v1.34.4"
    with pytest.raises(BuildError, match=r"github\.com/x/y"):
        required_version(go_mod, "github.com/x/y")


def test_the_registry_is_built_from_its_module_into_its_own_cache(tmp_path: Path) -> None:
    toolchain = GoToolchain(go="/usr/bin/go", version="go1.26.0", platform="linux/amd64")
    plan = plan_go_build(REGISTRY, toolchain=toolchain, cache_root=tmp_path, build_date="d")
    assert plan.output == tmp_path / plan.key / "registry"
    assert plan.command[-1] == "github.com/distribution/distribution/v3/cmd/registry"
    assert plan.version.startswith("v3.")
    flags = plan.command[plan.command.index("-ldflags") + 1]
    assert f"-X github.com/distribution/distribution/v3/version.version={plan.version}" in flags
    assert plan.partial == plan.output.with_name("registry.partial")
    assert default_cache_root({"XDG_CACHE_HOME": "/c"}, REGISTRY.cache_name) == Path("/c/warmpool/registry")
    assert default_cache_root({"XDG_CACHE_HOME": "/c"}) == Path("/c/warmpool/cluster")

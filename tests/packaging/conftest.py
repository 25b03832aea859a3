"""Fixtures of the packaging tests: helm and kustomize binaries (built from the Go module proxy on first use)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging.gotools import ToolUnavailable, ensure_go_tool
from tests.packaging.helm import Helm, ensure_helm


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    try:
        binary = ensure_helm()
    except ToolUnavailable as exc:
        pytest.fail(str(exc))
    home: Path = tmp_path_factory.mktemp("helm-home")
    return Helm(binary=binary, home=home)


KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
KUSTOMIZE_VERSION = "v5.8.2"
"""The newest kustomize 5 that the Go on this machine (1.26) can build; v5.8.3 needs Go 1.27."""


@pytest.fixture(scope="session")
def kustomize() -> Path:
    try:
        return ensure_go_tool("kustomize", KUSTOMIZE_MODULE, KUSTOMIZE_VERSION)
    except ToolUnavailable as exc:
        pytest.fail(str(exc))

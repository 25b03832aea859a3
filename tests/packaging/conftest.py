"""Fixtures of the packaging tests: helm and kustomize binaries (built from the Go module proxy on first use)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gobuilds import ensure_helm, ensure_kustomize
from tests.packaging.gotools import ToolUnavailable
from tests.packaging.helm import Helm


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    try:
        binary = ensure_helm()
    except ToolUnavailable as exc:
        pytest.fail(str(exc))
    home: Path = tmp_path_factory.mktemp("helm-home")
    return Helm(binary=binary, home=home)


@pytest.fixture(scope="session")
def kustomize() -> Path:
    try:
        return ensure_kustomize()
    except ToolUnavailable as exc:
        pytest.fail(str(exc))

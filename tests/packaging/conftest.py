"""Fixtures of the packaging tests: a Helm binary (built from the Go module proxy on first use)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging.helm import Helm, HelmUnavailable, ensure_helm


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    try:
        binary = ensure_helm()
    except HelmUnavailable as exc:
        pytest.fail(str(exc))
    home: Path = tmp_path_factory.mktemp("helm-home")
    return Helm(binary=binary, home=home)

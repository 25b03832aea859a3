"""Namespace patterns: which namespace arguments name one namespace and which are kopf globs."""

import pytest

from warmpool_operator.controller import is_glob

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("namespace", "glob"), [
    ("default", False), ("team-a", False), ("team-*", True), ("ns-?", True), ("[ab]-prod", True), ("!kube-*", True),
])
def test_is_glob(namespace: str, glob: bool) -> None:
    assert is_glob(namespace) is glob

"""Fixtures: the kmock API emulator and the cluster view of the operator tests, reused as they are."""

from tests.operator.conftest import cluster, emulator

__all__ = ["cluster", "emulator"]

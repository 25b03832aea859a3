"""Shared pytest configuration: test tiers are selected with markers (unit, component, e2e, bench)."""

from tests.gobuilds import (
    pytest_addoption,
    pytest_collection_finish,
    pytest_collection_modifyitems,
    pytest_sessionfinish,
)
from tests.oci_registry import oci_registry

__all__ = ["oci_registry", "pytest_addoption", "pytest_collection_finish", "pytest_collection_modifyitems",
           "pytest_sessionfinish"]

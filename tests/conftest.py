"""Shared pytest configuration: test tiers are selected with markers (unit, component, e2e, bench)."""

from tests.oci_registry import oci_registry

__all__ = ["oci_registry"]

"""Shared pytest configuration: test tiers are selected with markers (unit, component, e2e, bench)."""

"""Tests of the operator: pure core (unit), the running operator against an API server (component)."""

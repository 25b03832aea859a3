"""Autoscaling actuation in the operator: pure helpers (unit), periodic scaling of a WarmPool (component)."""

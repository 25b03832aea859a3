"""`warmpool operator ...`: run the kopf operator."""

from __future__ import annotations

from typing import Any


def add_operator_commands(sub: Any) -> None:
    """Register `warmpool operator run` (filled in by the operator work)."""
    _ = sub

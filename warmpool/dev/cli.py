"""`warmpool dev ...`: start and stop the local control plane."""

from __future__ import annotations

import argparse
from typing import Any


def add_dev_commands(sub: Any) -> None:
    """Register `warmpool dev up|down` (filled in by the local-cluster work)."""
    _ = (sub, argparse)

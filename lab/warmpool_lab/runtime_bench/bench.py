"""`warmpool bench runtime`: every measurement, and the table of their ratios (see the package docstring)."""



from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from warmpool_lab.runtime_bench.guests import write_modules
from warmpool_lab.runtime_bench.http_load import http_lines
from warmpool_lab.runtime_bench.in_process import in_process_lines
from warmpool_lab.runtime_bench.report import Line, environment, table


def measure_all(repeats: int, http_seconds: float) -> list[Line]:
    with tempfile.TemporaryDirectory(prefix="warmpool-bench-") as tmp:
        workdir = Path(tmp)
        modules = write_modules(workdir)
        lines = in_process_lines(modules, repeats)
        return lines + http_lines(modules, workdir, repeats, http_seconds)


def run_bench(repeats: int, http_seconds: float, as_json: bool) -> int:
    """Run every measurement and print the table (or JSON); 1 only when the bench itself failed."""
    repeats, http_seconds = max(1, repeats), max(0.2, http_seconds)
    env = environment(repeats, http_seconds)
    started = time.monotonic()
    try:
        lines = measure_all(repeats, http_seconds)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"warmpool bench runtime: {exc}", file=sys.stderr)
        return 1
    env["loadavg_at_end"] = os.getloadavg()[0]
    env["elapsed_s"] = time.monotonic() - started
    if as_json:
        print(json.dumps({"environment": env, "lines": [asdict(line) for line in lines]}, indent=2, ensure_ascii=False))
    else:
        print(table(lines, env))
    return 0

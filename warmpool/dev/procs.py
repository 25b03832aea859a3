"""Detached background processes recorded by PID file, stopped by PID; log tails and free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Recorded:
    pid: int
    start_ticks: int
    """Process start time (/proc/PID/stat field 22), so a recycled PID is never signalled."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is parenthesised and may hold spaces; split after it.
    return raw[raw.rindex(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def read_pid_file(path: Path) -> Recorded | None:
    try:
        pid, ticks = path.read_text().split()
        return Recorded(pid=int(pid), start_ticks=int(ticks))
    except (OSError, ValueError):
        return None


def recorded_alive(record: Recorded) -> bool:
    return alive(record.pid) and start_ticks(record.pid) == record.start_ticks


def start_detached(
    argv: Sequence[str], *, log: Path, pid_file: Path, env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Recorded:
    """Start argv in its own session, output appended to log, its PID recorded in pid_file."""
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out, open(os.devnull, "rb") as devnull:
        process = subprocess.Popen(
            list(argv), stdin=devnull, stdout=out, stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
        )
    record = Recorded(pid=process.pid, start_ticks=start_ticks(process.pid) or 0)
    pid_file.write_text(f"{record.pid} {record.start_ticks}\n")
    return record


def stop(record: Recorded, *, grace_s: float = 10.0) -> bool:
    """SIGTERM the process group, then SIGKILL after grace_s. False if it was already gone."""
    if not recorded_alive(record):
        return False
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not alive(record.pid):
                return True
            time.sleep(0.1)
    return True


def stop_pid_file(path: Path, *, grace_s: float = 10.0) -> bool:
    record = read_pid_file(path)
    stopped = record is not None and stop(record, grace_s=grace_s)
    path.unlink(missing_ok=True)
    return stopped


def tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])

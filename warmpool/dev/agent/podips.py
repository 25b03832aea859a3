"""Loopback pod IPs (127.0.0.2 upward), leased with file locks so agents on one machine never share one."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO


def candidate_ips() -> Iterator[str]:
    """127.0.0.2, 127.0.0.3, ... 127.0.0.254, 127.0.1.1, ... (no .0 or .255 octets)."""
    for third in range(256):
        for fourth in range(1, 255):
            if (third, fourth) != (0, 1):
                yield f"127.0.{third}.{fourth}"


def default_lock_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return Path(base) / "warmpool-dev-pod-ips"


def ports_free(ip: str, ports: Sequence[int]) -> bool:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((ip, port))
            except OSError:
                return False
    return True


class PodIPs:
    """Leases of loopback addresses; a lease is an flock on `<lock_dir>/<ip>` held while the pod lives."""

    def __init__(self, lock_dir: Path | None = None) -> None:
        self._dir = lock_dir or default_lock_dir()
        self._dir.mkdir(parents=True, exist_ok=True)
        self._held: dict[str, IO[bytes]] = {}

    def acquire(self, ports: Sequence[int], preferred: str | None = None) -> str:
        """Lease an address whose ports are free; the preferred one (a pod's earlier IP) first."""
        candidates = candidate_ips()
        if preferred:
            candidates = iter([preferred, *candidates])
        for ip in candidates:
            if ip in self._held:
                continue
            handle = (self._dir / ip).open("ab")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                handle.close()
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    continue
                raise
            if not ports_free(ip, ports):
                handle.close()
                continue
            self._held[ip] = handle
            return ip
        raise RuntimeError("no free loopback address left for a pod")

    def release(self, ip: str) -> None:
        handle = self._held.pop(ip, None)
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()

    def release_all(self) -> None:
        for ip in list(self._held):
            self.release(ip)

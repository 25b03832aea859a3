"""The config watcher: a thread that polls the config file and applies its changes live, and runs the periodic
upkeep (token files, the tuples' recent use) even when the config is not watched."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading

from warmpool_contract import redact_url
from warmpool_runtime.config import ConfigError, RuntimeConfig, parse_config_bytes, read_config
from warmpool_runtime.service import Runtime

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 1000
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")

Stamp = tuple[int, int, int, int, int] | None


def redact_error(message: str) -> str:
    """A config error safe for logs and `/readyz`: any URL in it (a YAML error quotes the line) is redacted."""
    return _URL.sub(lambda m: redact_url(m.group(0)), message)[:MAX_ERROR_CHARS]


def _stamp(path: str) -> Stamp:
    try:
        # Follows symlinks: the kubelet updates a mounted ConfigMap by pointing `..data` at a new directory,
        # so the file the path resolves to changes inode.
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class ConfigWatcher:
    """Every `settings.config_poll_seconds`: the runtime's upkeep, then (with a path) a stat of the config
    file; when what it resolves to changed, its content hash; when that changed, the new config is parsed
    and, when it differs from the applied one, applied; or refused (the running set is kept)."""

    def __init__(self, runtime: Runtime, path: str | None) -> None:
        self._runtime = runtime
        self._path = path
        self._interval = runtime.config.settings.config_poll_seconds
        # The first poll reads the file whatever its stamp: a change made while the process started is applied.
        self._stamp: Stamp | bool = False
        self._digest: str | None = None
        self._applied: RuntimeConfig = runtime.config
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="config-watch", daemon=True)
        runtime.reloads.watching = path is not None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._runtime.tick()
                if self._path is not None:
                    self.check(self._path)
            except Exception:
                log.exception("config watch: upkeep failed")

    def check(self, path: str) -> bool:
        """One poll; True when a new config was applied."""
        stamp = _stamp(path)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        reloads = self._runtime.reloads
        try:
            data = read_config(path)  # at most MAX_CONFIG_BYTES: a larger file is refused unread
        except ConfigError as exc:
            self._digest = None  # the same content back is a change from this
            return self._refuse(str(exc))
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            config = parse_config_bytes(data, path)  # the bytes hashed, not a second read
        except ConfigError as exc:
            return self._refuse(str(exc))
        reloads.last_error = None
        if config == self._applied:  # the same config written anew (or only comments changed)
            return False
        self._applied = config
        changes = self._runtime.apply(config)
        reloads.applied += 1
        reloads.restart_needed = changes.restart_needed
        log.info("config: applied (%d added, %d removed, %d resized, %d replaced)", len(changes.add),
                 len(changes.remove), len(changes.resize), len(changes.replace))
        return True

    def _refuse(self, message: str) -> bool:
        reloads = self._runtime.reloads
        reloads.refused += 1
        reloads.last_error = redact_error(message)
        log.error("config: refused, the running tuples are kept: %s", reloads.last_error)
        return False

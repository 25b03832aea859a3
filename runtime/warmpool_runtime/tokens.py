"""Per-tuple bearer tokens: a file of accepted sha256 digests, re-read when it changes, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Callable

from warmpool_runtime.capped_read import FileRefused, read_capped

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 64 << 10
"""A digests file larger than this is refused whole (the accepted set is kept as it was; none when there was
none): about a thousand digests fit, and every call is checked against each accepted one."""
_DIGEST = re.compile(rb"[0-9a-f]{64}")
_BEARER = b"bearer "
WWW_AUTHENTICATE = b'WWW-Authenticate: Bearer realm="warmpool"\r\n'

Stamp = tuple[int, int, int, int, int] | None
"""(device, inode, size, mtime ns, ctime ns) of the file a path resolves to; None when it cannot be read."""


def parse_digests(data: bytes) -> tuple[frozenset[bytes], int]:
    """The accepted digests (raw 32 bytes, from hex lines; blank lines and `#` comments skipped), and how
    many other lines were ignored. Pure."""
    digests: set[bytes] = set()
    ignored = 0
    for raw in data.splitlines():
        line = raw.strip().lower()
        if not line or line.startswith(b"#"):
            continue
        if _DIGEST.fullmatch(line):
            digests.add(bytes.fromhex(line.decode()))
        else:
            ignored += 1
    return frozenset(digests), ignored


def token_digest(authorization: bytes) -> bytes | None:
    """sha256 digest (raw) of the token of an `Authorization: Bearer <token>` value; None when it is not one."""
    if len(authorization) <= len(_BEARER) or authorization[:len(_BEARER)].lower() != _BEARER:
        return None
    token = authorization[len(_BEARER):].strip()
    return hashlib.sha256(token).digest() if token else None


def _stamp(path: str) -> Stamp:
    try:
        st = os.stat(path)  # follows the `..data` symlink of a mounted Secret: a swap changes the inode
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class TokenFile:
    """The digests one tuple accepts. `allows` runs on the serving thread; `refresh` on the watcher thread
    swaps the digest set in one assignment. A missing, unreadable or empty file accepts nothing; an oversized
    one (or not a regular file) is refused and the digests read before are kept (none at first: fail closed)."""

    def __init__(self, path: str, refused: Callable[[str], None] | None = None) -> None:
        self.path = path
        self._refused = refused
        """Told the path each time the file is refused for its size or kind (a metric counts these)."""
        self._digests: tuple[bytes, ...] = ()
        self._stamp: Stamp | bool = False  # never read yet
        self.refresh()

    @property
    def count(self) -> int:
        return len(self._digests)

    def refresh(self) -> bool:
        """Re-read the file when what it resolves to changed; True when it changed (read, or refused)."""
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        digests: frozenset[bytes] = frozenset()
        try:
            data = b"" if stamp is None else read_capped(self.path, MAX_FILE_BYTES)
        except FileRefused as exc:
            kept = len(self._digests)
            log.error("token digests file %s %s: refused, %s", self.path, exc,
                      f"the {kept} token(s) accepted before are kept" if kept else "every call to its tuple is refused")
            if self._refused is not None:
                self._refused(self.path)
            return True
        except OSError:
            stamp = None
        if stamp is None:
            log.warning("token digests file %s cannot be read: every call to its tuple is refused", self.path)
        else:
            digests, ignored = parse_digests(data)
            if ignored:
                # Never the lines themselves: one could be a token pasted by mistake.
                log.warning("token digests file %s: %d line(s) are not sha256 hex digests and were ignored",
                            self.path, ignored)
            if not digests:
                log.warning("token digests file %s holds no digest: every call to its tuple is refused", self.path)
            else:
                log.info("token digests file %s: %d accepted token(s)", self.path, len(digests))
        self._digests = tuple(sorted(digests))
        return True

    def allows(self, authorization: bytes) -> bool:
        """The header carries a token whose digest is accepted; compares against every digest, in constant time."""
        digest = token_digest(authorization)
        if digest is None:
            return False
        ok = False
        for accepted in self._digests:
            ok |= hmac.compare_digest(accepted, digest)
        return ok

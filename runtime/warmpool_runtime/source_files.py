"""Files beside a url source, read at each fetch (so a rotated Secret applies): request headers and a CA bundle."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

from warmpool_runtime.capped_read import FileRefused, read_capped
from warmpool_runtime.errors import ModuleError

HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
"""An HTTP field name: an RFC 9110 token."""
MAX_HEADER_BYTES = 8 << 10
MAX_HEADERS = 64
MAX_CA_BYTES = 1 << 20
FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "te", "upgrade",
                               "accept-encoding", "keep-alive", "proxy-connection", "trailer"})
"""Headers that frame or route the request: the fetch sets them itself, a headers file may not."""


def read_headers(directory: str) -> dict[str, str]:
    """One header per regular file of `directory` (name = file name, value = content, surrounding whitespace such
    as a trailing newline dropped). Names starting with `.` are skipped (a mounted Secret's `..data`). Errors name
    the directory and file, never a value."""
    root = Path(directory)
    try:
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise ModuleError(f"cannot read headersDir {directory}: {exc.strerror or type(exc).__name__}") from None
    headers: dict[str, str] = {}
    for path in entries:
        name = path.name
        if not path.is_file():  # follows the symlinks a Secret mount makes
            continue
        if not HEADER_NAME.fullmatch(name):
            raise ModuleError(f"headersDir {directory}: file {name!r} is not a valid header name (an HTTP token)")
        if name.lower() in FORBIDDEN_HEADERS:
            raise ModuleError(f"headersDir {directory}: header {name} is set by the fetch itself and cannot be given")
        if len(headers) == MAX_HEADERS:
            raise ModuleError(f"headersDir {directory} has more than {MAX_HEADERS} headers")
        try:
            raw = read_capped(str(path), MAX_HEADER_BYTES)
        except FileRefused as exc:
            raise ModuleError(f"headersDir {directory}: header {name} {exc}") from None
        except OSError as exc:
            raise ModuleError(f"cannot read header {name} in headersDir {directory}: "
                              f"{exc.strerror or type(exc).__name__}") from None
        try:
            value = raw.decode("latin-1" if raw.isascii() else "utf-8").strip(" \t\r\n")
        except UnicodeDecodeError:
            raise ModuleError(f"headersDir {directory}: header {name} is not text") from None
        if any(c in value for c in "\r\n\0") or any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
            raise ModuleError(f"headersDir {directory}: header {name} has a line break or control character "
                              "in its value")
        if any(existing.lower() == name.lower() for existing in headers):
            raise ModuleError(f"headersDir {directory}: header {name} is given twice (names are case-insensitive)")
        headers[name] = value
    return headers


def ssl_context(ca_file: str) -> ssl.SSLContext:
    """A TLS context that trusts exactly the PEM bundle `ca_file` (not the system's store), hostnames checked."""
    try:
        pem = read_capped(ca_file, MAX_CA_BYTES).decode("ascii")
    except FileRefused as exc:
        raise ModuleError(f"caFile {ca_file} {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ModuleError(f"cannot read caFile {ca_file}: {why}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the host name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError):
        raise ModuleError(f"caFile {ca_file} holds no usable PEM certificate") from None
    return context

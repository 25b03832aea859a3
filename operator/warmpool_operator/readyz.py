"""The runtime's `GET /readyz` body (docs/runtime-config.md) parsed into frozen dataclasses; pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Error codes a tuple can carry, mapped to the condition reason the operator reports.
ERROR_REASONS: Mapping[str, str] = {
    "module_hash_mismatch": "ModuleHashMismatch",
    "module_unreachable": "ModuleUnreachable",
    "module_invalid": "ModuleInvalid",
    "module_too_large": "ModuleTooLarge",
    "missing_import": "MissingImport",
    "instantiate_failed": "InstantiateFailed",
}


MAX_MESSAGE_CHARS = 2048
"""A tuple's error message is kept to this many characters: it ends up in status and Events."""
# An HTTP credential a fetch error might quote (a registry's or a server's answer echoing a header);
# a lowercase word after the scheme ("a Bearer challenge") is prose, not a credential.
_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]{8,})")


def clean_message(text: str) -> str:
    """A pod's error message bounded, with any `Bearer`/`Basic` credential in it hidden; URLs are
    redacted where the message is shown (`health.redact_text`). Digests and registry names stay."""
    bounded = text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."

    def hide(match: re.Match[str]) -> str:
        scheme, space, value = match.groups()
        return match.group(0) if value.isalpha() and value.islower() else f"{scheme}{space}<redacted>"

    return _CREDENTIAL.sub(hide, bounded)


@dataclass(frozen=True, slots=True)
class TupleError:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class TupleState:
    """One (tenant, module) pool inside one runtime pod."""

    tenant: str
    sha256: str
    warm: int
    target: int
    ready: bool
    error: TupleError | None


@dataclass(frozen=True, slots=True)
class ReadyzReport:
    ready: bool
    tuples: tuple[TupleState, ...]

    def errors(self) -> tuple[tuple[TupleState, TupleError], ...]:
        return tuple((t, t.error) for t in self.tuples if t.error is not None)


def parse_readyz(body: Any) -> ReadyzReport:
    """Raise ValueError when the body is not the documented shape."""
    if not isinstance(body, Mapping) or not isinstance(body.get("ready"), bool):
        raise ValueError("readyz body must be an object with a boolean 'ready'")
    raw_tuples = body.get("tuples", [])
    if not isinstance(raw_tuples, list):
        raise ValueError("readyz 'tuples' must be a list")
    return ReadyzReport(ready=body["ready"], tuples=tuple(_tuple(item) for item in raw_tuples))


def _tuple(raw: Any) -> TupleState:
    if not isinstance(raw, Mapping):
        raise ValueError("readyz tuple must be an object")
    error = raw.get("error")
    parsed_error: TupleError | None = None
    if error is not None:
        if not isinstance(error, Mapping) or not isinstance(error.get("code"), str):
            raise ValueError("readyz tuple error must be an object with a string 'code'")
        parsed_error = TupleError(code=error["code"][:64], message=clean_message(str(error.get("message", ""))))
    return TupleState(
        tenant=str(raw.get("tenant", "")),
        sha256=str(raw.get("sha256", "")),
        warm=_int(raw.get("warm")),
        target=_int(raw.get("target")),
        ready=raw.get("ready") is True,
        error=parsed_error,
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0

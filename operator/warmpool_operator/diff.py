"""Pure comparison of desired child objects with what the API holds, and the writes that follow.

Only the fields the operator renders are compared: fields the API server defaults, and labels or
annotations that others add, are not drift. A desired `None` means "must be absent"; an `Exact`
map is owned whole (a key someone added is drift, and the patch removes it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


class Exact(dict[str, Any]):
    """A rendered map the operator owns whole, such as a Service's selector: an extra key there
    changes what the object does, so it is drift like a changed value."""


def drift(desired: Any, actual: Any, path: str = "") -> list[str]:
    """Paths where `actual` does not hold what `desired` renders; empty when in sync."""
    if desired is None:
        return [] if _empty(actual) else [path or "."]
    if isinstance(desired, Mapping):
        if not isinstance(actual, Mapping):
            return [path or "."]
        found: list[str] = []
        for key, value in desired.items():
            found += drift(value, actual.get(key), f"{path}.{key}")
        if isinstance(desired, Exact):
            found += [f"{path}.{key}" for key in actual if key not in desired]
        return found
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(actual) != len(desired):
            return [path]
        found = []
        for index, (want, have) in enumerate(zip(desired, actual, strict=True)):
            found += drift(want, have, f"{path}[{index}]")
        return found
    return [] if _same_scalar(desired, actual, path) else [path]


def creation_body(desired: Any) -> Any:
    """The object to POST: "must be absent" markers are simply left out."""
    if isinstance(desired, Mapping):
        return {key: creation_body(value) for key, value in desired.items() if value is not None}
    if isinstance(desired, list):
        return [creation_body(item) for item in desired]
    return desired


def merge_patch(desired: Mapping[str, Any], actual: Any = None) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) applying `desired` to `actual`.

    Maps merge, so labels and annotations others set survive, except in `Exact` maps, where keys
    `actual` has beyond the rendered ones are deleted; `None` deletes; lists replace wholesale,
    so inside them the markers are dropped instead.
    """
    have = actual if isinstance(actual, Mapping) else {}
    out: dict[str, Any] = {}
    if isinstance(desired, Exact):
        out.update((key, None) for key in have if key not in desired)
    for key, value in desired.items():
        if isinstance(value, Mapping):
            out[key] = merge_patch(value, have.get(key))
        elif isinstance(value, list):
            out[key] = creation_body(value)
        else:
            out[key] = value
    return out


def is_controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def parse_quantity(text: str) -> Decimal | None:
    """A Kubernetes resource quantity as a number, or None when it is not one."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        value = Decimal(number)
    except InvalidOperation:
        return None
    if suffix[:1] in ("e", "E"):
        return value * Decimal(10) ** int(suffix[1:])
    return value * _SUFFIX[suffix]


def _same_scalar(desired: Any, actual: Any, path: str) -> bool:
    if desired == actual and type(desired) is type(actual):
        return True
    if isinstance(desired, bool) or isinstance(actual, bool):
        return False
    if isinstance(desired, int | float) and isinstance(actual, int | float):
        return desired == actual
    # The API server canonicalises quantities ("1000m" reads back as "1"); compare their values.
    if ".resources." in path and isinstance(desired, str | int) and isinstance(actual, str | int):
        want, have = parse_quantity(str(desired)), parse_quantity(str(actual))
        return want is not None and want == have
    return False


def _empty(value: Any) -> bool:
    return value is None or value in ({}, [])

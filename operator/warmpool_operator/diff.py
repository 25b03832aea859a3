"""Pure comparison of what the operator applies with what the API holds: is a write needed?

Only the fields the operator applies are compared: fields the API server defaults, labels or
annotations others add, and items others add to lists keyed by name (a sidecar container, a
volume) are not drift. A desired `None` means "must be absent"; an `Exact` map is owned whole
(server-side apply treats it as atomic, so a key someone added is drift that the next apply removes).
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
        if _keyed(desired) and isinstance(actual, list):
            return _keyed_drift(desired, actual, path)
        if not isinstance(actual, list) or len(actual) != len(desired):
            return [path]
        found = []
        for index, (want, have) in enumerate(zip(desired, actual, strict=True)):
            found += drift(want, have, f"{path}[{index}]")
        return found
    return [] if _same_scalar(desired, actual, path) else [path]


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


def _keyed(items: list[Any]) -> bool:
    """Lists of named objects (containers, volumes, ports, mounts) merge by name under server-side apply."""
    return bool(items) and all(isinstance(item, Mapping) and isinstance(item.get("name"), str) for item in items)


def _keyed_drift(desired: list[Any], actual: list[Any], path: str) -> list[str]:
    by_name = {item.get("name"): item for item in actual if isinstance(item, Mapping)}
    found: list[str] = []
    for want in desired:
        name = want["name"]
        found += drift(want, by_name.get(name), f"{path}[name={name}]")
    return found


def _empty(value: Any) -> bool:
    return value is None or value in ({}, [])

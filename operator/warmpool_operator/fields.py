"""Readers for the fields of a custom resource's spec, raising the one SpecError that names the field (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


class SpecError(ValueError):
    """A WarmPool that cannot work as written; `field` names the offending path."""

    def __init__(self, field_path: str, problem: str) -> None:
        super().__init__(f"{field_path}: {problem}")
        self.field = field_path
        self.problem = problem


def require_object(raw: Any, where: str) -> Mapping[str, Any]:
    if raw is None:
        raise SpecError(where, "is required")
    if not isinstance(raw, Mapping):
        raise SpecError(where, "must be an object")
    return raw


def optional_object(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}.{key}", "must be an object")
    return value


def no_unknown(obj: Mapping[str, Any], where: str, known: set[str]) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        raise SpecError(where, f"unknown field(s) {', '.join(unknown)}")


def require_string(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None or value == "":
        raise SpecError(f"{where}.{key}", "is required")
    if not isinstance(value, str):
        raise SpecError(f"{where}.{key}", f"must be a string, got {value!r}")
    return value


def integer(
    obj: Mapping[str, Any], key: str, where: str, default: int, *, minimum: int, maximum: int | None = None
) -> int:
    value = optional_integer(obj, key, where, minimum=minimum)
    if value is not None and maximum is not None and value > maximum:
        raise SpecError(f"{where}.{key}", f"must be <= {maximum}, got {value}")
    return default if value is None else value


def optional_integer(obj: Mapping[str, Any], key: str, where: str, *, minimum: int) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where}.{key}", f"must be an integer, got {value!r}")
    if value < minimum:
        raise SpecError(f"{where}.{key}", f"must be >= {minimum}, got {value}")
    return value


def string_map(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, str]:
    value = obj.get(key)
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise SpecError(f"{where}.{key}", "must be a map of strings to strings")
    return MappingProxyType(dict(value))

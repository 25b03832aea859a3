"""Runtime configuration: the tuples to serve and their limits, parsed once into frozen dataclasses."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from warmpool_contract import (
    DEFAULT_MAX_TOTAL_WARM,
    DEFAULT_WARM_INSTANCES,
    LIMIT_FIELDS,
    SHA256_HEX,
    SHORT_HASH,
    TENANT_PATTERN,
    redact_url,
)
from warmpool_runtime.capped_read import FileRefused, read_capped
from warmpool_runtime.instance import Limits
from warmpool_runtime.modules import ModuleSource
from warmpool_runtime.oci import OciReferenceError, OciSource, parse_reference, parse_repository
from warmpool_runtime.settings import SETTINGS_KEYS, RuntimeSettings, SettingsError, parse_settings

MAX_CONFIG_BYTES = 4 << 20
"""A larger config file is refused: a ConfigMap holds at most 1 MiB, and a file mounted otherwise gets room to
spare; the cap keeps a runaway file from being read and parsed whole."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the field."""


@dataclass(frozen=True, slots=True)
class TupleConfig:
    """One (tenant, module) pool to keep warm."""

    tenant: str
    sha256: str
    source: ModuleSource
    warm: int = DEFAULT_WARM_INSTANCES
    limits: Limits = field(default_factory=Limits)
    token_digests_file: str | None = None
    """A file of sha256 hex digests of the bearer tokens a call must carry (one per line); None: no token."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant, self.sha256)


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """Everything `warmpool runtime serve` needs besides where to listen."""

    tuples: tuple[TupleConfig, ...]
    max_total_warm: int = DEFAULT_MAX_TOTAL_WARM
    wasi: bool = True
    """Offer WASI preview 1 (no preopens, env, args or stdio) to modules that import it."""
    compiled_cache_dir: str | None = None
    """Where precompiled modules are kept between runs (a directory only this user can write)."""
    settings: RuntimeSettings = field(default_factory=RuntimeSettings)
    """Tuning: call lanes, pools, HTTP, engine."""

    @property
    def needs_fuel(self) -> bool:
        """Some tuple sets a fuel budget, so fuel metering must be compiled in."""
        return any(t.limits.fuel is not None for t in self.tuples)

    def floors(self) -> dict[tuple[str, str], int]:
        """Warm floor per tuple: `warm`, cut so the sum never exceeds `max_total_warm` (config order)."""
        remaining, out = self.max_total_warm, {}
        for t in self.tuples:
            out[t.key] = min(t.warm, remaining)
            remaining -= out[t.key]
        return out


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def parse_limits(raw: Any, base: Limits, where: str) -> Limits:
    if raw is None:
        return base
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping")
    unknown = sorted(set(raw) - set(LIMIT_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, attr in LIMIT_FIELDS.items():
        if key in raw:
            if attr == "fuel" and raw[key] is None:
                values[attr] = None
            else:
                # A module without tables needs no table elements; every other limit must allow something.
                values[attr] = _int(raw[key], f"{where}.{key}", 0 if attr == "table_elements" else 1)
    return replace(base, **values)


_SOURCE_KINDS = ("path", "url", "dir", "oci")
_URL_EXTRAS = {"headersDir": "headers_dir", "caFile": "ca_file"}
_OCI_FIELDS = {"repository", "reference", "insecure", "dockerConfig"}


def parse_source(raw: Any, where: str) -> ModuleSource:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping with one of {', '.join(_SOURCE_KINDS)}")
    given = {k: v for k, v in raw.items() if v is not None}
    unknown = sorted(str(k) for k in set(given) - {*_SOURCE_KINDS, *_URL_EXTRAS})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    kinds = [k for k in _SOURCE_KINDS if k in given]
    if len(kinds) != 1:
        raise ConfigError(f"{where} needs exactly one of {', '.join(_SOURCE_KINDS)}; got {kinds or 'none'}")
    kind = kinds[0]
    extras = {attr: _path(given[key], f"{where}.{key}") for key, attr in _URL_EXTRAS.items() if key in given}
    if extras and kind != "url":
        raise ConfigError(f"{where}: {' and '.join(k for k in _URL_EXTRAS if k in given)} only go with url, not {kind}")
    if kind == "oci":
        return ModuleSource(oci=parse_oci(given["oci"], f"{where}.oci"))
    value = given[kind]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{kind} must be a non-empty string")
    if kind == "url" and not value.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.url must be an http(s) URL, got {redact_url(value)!r}")
    if kind == "url" and extras.get("ca_file") and not value.startswith("https://"):
        raise ConfigError(f"{where}.caFile needs an https url, got {redact_url(value)!r}")
    if kind == "path":
        return ModuleSource(path=value)
    if kind == "dir":
        return ModuleSource(dir=value)
    return ModuleSource(url=value, headers_dir=extras.get("headers_dir"), ca_file=extras.get("ca_file"))


def _path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty path")
    return value


def parse_oci(raw: Any, where: str) -> OciSource:
    """`{repository, reference?, insecure?, dockerConfig?}` as an OciSource; errors name the field."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping with repository (and optionally reference, insecure, "
                          "dockerConfig)")
    unknown = sorted(str(k) for k in set(raw) - _OCI_FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    repository = raw.get("repository")
    if not isinstance(repository, str) or not repository:
        raise ConfigError(f"{where}.repository must be a non-empty string host[:port]/path")
    try:
        parse_repository(repository)
    except OciReferenceError as exc:
        raise ConfigError(f"{where}.repository {redact_url(repository)!r} {exc}") from None
    reference = raw.get("reference")
    if reference is not None:
        if not isinstance(reference, str):
            raise ConfigError(f"{where}.reference must be a string (a tag or sha256:<hex>)")
        try:
            parse_reference(reference)
        except OciReferenceError as exc:
            raise ConfigError(f"{where}.reference {redact_url(reference)!r} {exc}") from None
    insecure = raw.get("insecure")
    insecure = False if insecure is None else insecure
    if not isinstance(insecure, bool):
        raise ConfigError(f"{where}.insecure must be a boolean, got {insecure!r}")
    docker_config = raw.get("dockerConfig")
    if docker_config is not None:
        docker_config = _path(docker_config, f"{where}.dockerConfig")
    return OciSource(repository=repository, reference=reference, insecure=insecure, docker_config=docker_config)


def parse_tuple(raw: Any, limits: Limits, where: str) -> TupleConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping")
    tenant = raw.get("tenant")
    if not isinstance(tenant, str) or not TENANT_PATTERN.match(tenant):
        raise ConfigError(f"{where}.tenant must be a DNS-1123 label (a-z, 0-9, '-', at most 63), got {tenant!r}")
    module = raw.get("module")
    if not isinstance(module, Mapping):
        raise ConfigError(f"{where}.module must be a mapping with sha256 and source")
    sha = module.get("sha256")
    if not isinstance(sha, str) or not SHA256_HEX.match(sha):
        raise ConfigError(f"{where}.module.sha256 must be 64 lowercase hex characters, got {sha!r}")
    return TupleConfig(
        tenant=tenant,
        sha256=sha,
        source=parse_source(module.get("source"), f"{where}.module.source"),
        warm=_int(raw.get("warmInstancesPerTuple", DEFAULT_WARM_INSTANCES), f"{where}.warmInstancesPerTuple", 0),
        limits=parse_limits(raw.get("limits"), limits, f"{where}.limits"),
        token_digests_file=_token_file(raw.get("tokenDigestsFile"), f"{where}.tokenDigestsFile"),
    )


def _token_file(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(f"{where} must be an absolute path, got {value!r}")
    return value


_TOP_FIELDS = {"maxTotalWarm", "limits", "tuples", "wasi", "compiledCacheDir", "settings"}


def parse_config(raw: Any) -> RuntimeConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("config must be a mapping")
    unknown = sorted(str(key) for key in set(raw) - _TOP_FIELDS)
    if unknown:
        hints = [f"{key} (a setting: give it as settings.{key})" if key in SETTINGS_KEYS else key for key in unknown]
        raise ConfigError(f"config: unknown field(s) {', '.join(hints)}")
    try:
        settings = parse_settings(raw.get("settings"))
    except SettingsError as exc:
        raise ConfigError(str(exc)) from exc
    limits = parse_limits(raw.get("limits"), Limits(), "limits")
    raw_tuples = raw.get("tuples")
    if raw_tuples is None:
        raise ConfigError("tuples must be given (a list; empty for a runtime with no tuples yet)")
    if not isinstance(raw_tuples, list):
        raise ConfigError("tuples must be a list")
    tuples = tuple(parse_tuple(t, limits, f"tuples[{i}]") for i, t in enumerate(raw_tuples))
    seen: set[tuple[str, str]] = set()
    for i, t in enumerate(tuples):
        if t.key in seen:
            raise ConfigError(f"tuples[{i}] repeats tenant {t.tenant} with module {t.sha256[:SHORT_HASH]}")
        seen.add(t.key)
    wasi = raw.get("wasi", True)
    if not isinstance(wasi, bool):
        raise ConfigError(f"wasi must be a boolean, got {wasi!r}")
    cache_dir = raw.get("compiledCacheDir")
    if cache_dir is not None and not isinstance(cache_dir, str):
        raise ConfigError("compiledCacheDir must be a path")
    return RuntimeConfig(
        tuples=tuples,
        max_total_warm=_int(raw.get("maxTotalWarm", DEFAULT_MAX_TOTAL_WARM), "maxTotalWarm", 0),
        wasi=wasi,
        compiled_cache_dir=cache_dir,
        settings=settings,
    )


def read_config(path: str) -> bytes:
    """The config file's bytes, at most `MAX_CONFIG_BYTES` of them (a larger file is refused, never cut)."""
    try:
        return read_capped(path, MAX_CONFIG_BYTES)
    except FileRefused as exc:
        raise ConfigError(f"config {path} {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc


def parse_config_bytes(data: bytes, path: str) -> RuntimeConfig:
    """A config file's content (JSON when `path` ends with `.json`, else YAML) as a RuntimeConfig."""
    kind = "JSON" if path.endswith(".json") else "YAML"
    try:
        text = data.decode("utf-8")
        raw = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path} is not UTF-8 text: {exc}") from exc
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config {path} is not valid {kind}: {exc}") from exc
    return parse_config(raw)


def load_config(path: str) -> RuntimeConfig:
    return parse_config_bytes(read_config(path), path)


def single_tuple_config(tenant: str, module: str, sha256: str, warm: int) -> RuntimeConfig:
    """The config the one-tuple command-line flags describe."""
    source = {"url": module} if module.startswith(("http://", "https://")) else {"path": module}
    return parse_config({
        "maxTotalWarm": max(warm, 1),
        "tuples": [{"tenant": tenant, "module": {"sha256": sha256, "source": source}, "warmInstancesPerTuple": warm}],
    })

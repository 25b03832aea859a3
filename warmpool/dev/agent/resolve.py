"""Pure resolution of a parsed pod into process argv, environment and volume file contents."""

from __future__ import annotations

import base64
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from warmpool.dev.agent.podspec import CONFIG_ERROR, Container, ObjectKind, PodPlan, Refused, Volume

ObjectKey = tuple[ObjectKind, str]
Objects = Mapping[ObjectKey, Mapping[str, Any] | None]
"""ConfigMaps and Secrets fetched for a pod, by (kind, name); None when absent."""

_SINGULAR = {"configmaps": "configmap", "secrets": "secret"}
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class Missing(Exception):
    """A ConfigMap or Secret the pod needs does not exist (yet); the agent retries."""


@dataclass(frozen=True)
class Addresses:
    pod_ip: str
    host_ip: str


def needed_objects(plan: PodPlan) -> set[ObjectKey]:
    keys: set[ObjectKey] = set()
    for volume in plan.volumes:
        keys.update((source.kind, source.name) for source in volume.keyed)
    for container in plan.containers:
        keys.update((var.key_ref.kind, var.key_ref.name) for var in container.env if var.key_ref)
        keys.update((source.kind, source.name) for source in container.env_from)
    return keys


def object_data(
    kind: ObjectKind, obj: Mapping[str, Any], text_mounts: Sequence[tuple[str, str]] = ()
) -> dict[str, bytes]:
    """The keys of a ConfigMap (data + binaryData) or Secret (base64 data) as bytes; mount paths
    in a ConfigMap's text `data` are rewritten (see rewrite_text)."""
    if kind == "secrets":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data = {k: rewrite_text(str(v), text_mounts).encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _lookup(objects: Objects, kind: ObjectKind, name: str, optional: bool,
            text_mounts: Sequence[tuple[str, str]] = ()) -> dict[str, bytes] | None:
    obj = objects.get((kind, name))
    if obj is None:
        if optional:
            return None
        raise Missing(f'{_SINGULAR[kind]} "{name}" not found')
    return object_data(kind, obj, text_mounts)


def field_value(pod: Mapping[str, Any], path: str, addresses: Addresses) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    values = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": addresses.pod_ip,
        "status.podIPs": addresses.pod_ip,
        "status.hostIP": addresses.host_ip,
        "status.hostIPs": addresses.host_ip,
    }
    return str(values.get(path) or "")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes $(VAR) expansion: defined variables are substituted, $$ escapes, the rest stays."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, text)


def container_env(
    container: Container, pod: Mapping[str, Any], objects: Objects, addresses: Addresses
) -> dict[str, str]:
    """The container's environment in pod-spec order: envFrom first, then env (later wins)."""
    env: dict[str, str] = {}
    try:
        for source in container.env_from:
            found = _lookup(objects, source.kind, source.name, source.optional) or {}
            env.update({source.prefix + k: v.decode(errors="replace") for k, v in found.items()})
        for var in container.env:
            if var.field_path is not None:
                env[var.name] = field_value(pod, var.field_path, addresses)
            elif var.key_ref is not None:
                ref = var.key_ref
                data = _lookup(objects, ref.kind, ref.name, ref.optional)
                if data is not None and ref.key in data:
                    env[var.name] = data[ref.key].decode(errors="replace")
                elif not ref.optional:
                    raise Missing(f'couldn\'t find key {ref.key} in {_SINGULAR[ref.kind]} "{ref.name}"')
            else:
                env[var.name] = expand(var.value or "", env)
    except Missing as exc:
        raise Refused(CONFIG_ERROR, str(exc)) from exc
    return env


def rewrite_paths(value: str, mounts: Sequence[tuple[str, str]]) -> str:
    """Point absolute paths under a mount path (whole value, or after `=`) at the pod's local tree."""
    prefix, sep, path = value.rpartition("=") if "=" in value and not value.startswith("/") else ("", "", value)
    for mount_path, local in sorted(mounts, key=lambda m: len(m[0]), reverse=True):
        if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
            return prefix + sep + local + path[len(mount_path.rstrip("/")) :]
    return value


def rewrite_text(text: str, mounts: Sequence[tuple[str, str]]) -> str:
    """Point absolute mount paths inside a text file at the pod's local tree, in one pass.

    A process on the local node sees the host's filesystem, so a config file that names another
    mounted file (the runtime config naming `/modules/x.wasm`) needs the same rewrite as args."""
    table = {mount.rstrip("/"): local for mount, local in mounts if mount.rstrip("/")}
    if not table:
        return text
    alternatives = "|".join(re.escape(path) for path in sorted(table, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w./-])({alternatives})(?=/|$|[\s\"',;:}}\])])", re.MULTILINE)
    return pattern.sub(lambda match: table[match.group(1)], text)


def local_mounts(container: Container, pod_dir: str) -> list[tuple[str, str]]:
    return [(m.mount_path, posixpath.join(pod_dir, m.mount_path.lstrip("/"))) for m in container.mounts]


def pod_mounts(plan: PodPlan, pod_dir: str) -> list[tuple[str, str]]:
    """Every mount of every container (one mount path means one volume in a pod, see parse_pod)."""
    return sorted({pair for container in plan.containers for pair in local_mounts(container, pod_dir)})


def process_argv(
    container: Container, env: Mapping[str, str], *, warmpool: Sequence[str], pod_dir: str, pod_ip: str
) -> list[str]:
    """The local argv: `warmpool` mapped to this installation's CLI, mount paths rewritten, and for
    `warmpool runtime serve` a trailing `--host <podIP>` (the runtime takes the last --host)."""
    mounts = local_mounts(container, pod_dir)
    rest = [rewrite_paths(expand(arg, env), mounts) for arg in container.command[1:]]
    argv = [*warmpool, *rest]
    if rest[:2] == ["runtime", "serve"]:
        argv += ["--host", pod_ip]
    return argv


def volume_files(
    volume: Volume, pod: Mapping[str, Any], objects: Objects, addresses: Addresses, tokens: Mapping[str, str],
    *, text_mounts: Sequence[tuple[str, str]] = (),
) -> dict[str, bytes]:
    """The files of a configMap/secret/downwardAPI/projected volume, by relative path.
    tokens maps a serviceAccountToken source's path to the token requested for it; text_mounts
    (the pod's mounts) are rewritten in ConfigMap text data."""
    files: dict[str, bytes] = {}
    for source in volume.keyed:
        data = _lookup(objects, source.kind, source.name, source.optional, text_mounts)
        if data is None:
            continue
        if source.items is None:
            files.update(data)
            continue
        for key, path in source.items:
            if key not in data:
                if source.optional:
                    continue
                raise Missing(f'key {key} not found in {_SINGULAR[source.kind]} "{source.name}"')
            files[path] = data[key]
    for item in volume.downward:
        files[item.path] = field_value(pod, item.field_path, addresses).encode()
    for token in volume.tokens:
        files[token.path] = tokens[token.path].encode()
    for path in files:
        normal = posixpath.normpath(path)
        if normal.startswith(("/", "..")):
            raise Refused(CONFIG_ERROR, f"volume {volume.name}: path {path!r} leaves the volume")
    return files

"""Pure parsing of a Pod into what the node agent runs, or a refusal that says why it cannot."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

# Waiting reasons the kubelet uses; controllers and the operator recognise them.
CONFIG_ERROR = "CreateContainerConfigError"
CREATE_ERROR = "CreateContainerError"

ObjectKind = Literal["configmaps", "secrets"]
FIELD_PATHS = frozenset({
    "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
    "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs",
})


class Refused(Exception):
    """The pod cannot run on this node; reason is a kubelet-style waiting reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class HttpProbe:
    path: str
    port: int
    host: str | None
    scheme: str
    headers: tuple[tuple[str, str], ...]
    initial_delay_s: float
    period_s: float
    timeout_s: float
    success_threshold: int
    failure_threshold: int


@dataclass(frozen=True)
class KeyRef:
    kind: ObjectKind
    name: str
    key: str
    optional: bool


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None
    """A literal value ($(VAR) references expanded at start)."""
    field_path: str | None = None
    key_ref: KeyRef | None = None


@dataclass(frozen=True)
class EnvFrom:
    kind: ObjectKind
    name: str
    prefix: str
    optional: bool


@dataclass(frozen=True)
class Mount:
    volume: str
    mount_path: str
    sub_path: str


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    command: tuple[str, ...]
    """The full argv with `warmpool` as argv[0]; mapped to the local executable at start."""
    env: tuple[EnvVar, ...]
    env_from: tuple[EnvFrom, ...]
    mounts: tuple[Mount, ...]
    ports: tuple[int, ...]
    readiness: HttpProbe | None
    liveness: HttpProbe | None


@dataclass(frozen=True)
class KeyedSource:
    """A ConfigMap or Secret projected into files."""

    kind: ObjectKind
    name: str
    items: tuple[tuple[str, str], ...] | None
    """(key, relative path) pairs; None projects every key under its own name."""
    optional: bool


@dataclass(frozen=True)
class DownwardItem:
    path: str
    field_path: str


@dataclass(frozen=True)
class TokenSource:
    path: str
    audience: str | None
    expiration_s: int


@dataclass(frozen=True)
class Volume:
    name: str
    kind: Literal["files", "emptyDir", "hostPath"]
    keyed: tuple[KeyedSource, ...] = ()
    downward: tuple[DownwardItem, ...] = ()
    tokens: tuple[TokenSource, ...] = ()
    host_path: str | None = None
    mode: int = 0o644


@dataclass(frozen=True)
class PodPlan:
    uid: str
    namespace: str
    name: str
    containers: tuple[Container, ...]
    volumes: tuple[Volume, ...]
    restart_policy: Literal["Always", "OnFailure", "Never"]
    service_account: str


def _probe(raw: Mapping[str, Any] | None, ports: Mapping[str, int], where: str) -> HttpProbe | None:
    if not raw:
        return None
    http = raw.get("httpGet")
    if http is None:
        raise Refused(CONFIG_ERROR, f"{where}: only httpGet probes are supported by the local node agent")
    port = http.get("port")
    if isinstance(port, str) and not port.isdigit():
        if port not in ports:
            raise Refused(CONFIG_ERROR, f"{where}: probe port {port!r} names no container port")
        port = ports[port]
    return HttpProbe(
        path=str(http.get("path") or "/"),
        port=int(port),
        host=http.get("host"),
        scheme=str(http.get("scheme") or "HTTP").lower(),
        headers=tuple((str(h["name"]), str(h["value"])) for h in http.get("httpHeaders") or ()),
        initial_delay_s=float(raw.get("initialDelaySeconds") or 0),
        period_s=float(raw.get("periodSeconds") or 10),
        timeout_s=float(raw.get("timeoutSeconds") or 1),
        success_threshold=int(raw.get("successThreshold") or 1),
        failure_threshold=int(raw.get("failureThreshold") or 3),
    )


def _field_path(path: str, where: str) -> str:
    if path in FIELD_PATHS or path.startswith(("metadata.labels[", "metadata.annotations[")):
        return path
    raise Refused(CONFIG_ERROR, f"{where}: fieldRef {path!r} is not supported")


def _env(raw: Mapping[str, Any], where: str) -> EnvVar:
    name = str(raw["name"])
    source = raw.get("valueFrom")
    if source is None:
        return EnvVar(name=name, value=str(raw.get("value") or ""))
    if (ref := source.get("fieldRef")) is not None:
        return EnvVar(name=name, field_path=_field_path(str(ref["fieldPath"]), f"{where} env {name}"))
    for field, kind in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
        if (ref := source.get(field)) is not None:
            key_ref = KeyRef(kind=kind, name=str(ref["name"]), key=str(ref["key"]),  # type: ignore[arg-type]
                             optional=bool(ref.get("optional")))
            return EnvVar(name=name, key_ref=key_ref)
    raise Refused(CONFIG_ERROR, f"{where} env {name}: valueFrom {sorted(source)} is not supported")


def map_command(command: Sequence[str], args: Sequence[str], image: str, where: str) -> tuple[str, ...]:
    """The container's argv, provided it runs the `warmpool` CLI (by command, or the image's entrypoint)."""
    if command:
        if posixpath.basename(command[0]) != "warmpool":
            raise Refused(CREATE_ERROR, f"{where}: command {command[0]!r} is not `warmpool`; only the "
                                        "warmpool CLI runs on the local node")
        return ("warmpool", *command[1:], *args)
    repository = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    if repository.startswith("warmpool"):
        return ("warmpool", *args)
    raise Refused(CREATE_ERROR, f"{where}: image {image!r} has no command and is not a warmpool image")


def _container(raw: Mapping[str, Any], volumes: Mapping[str, Volume]) -> Container:
    name = str(raw["name"])
    where = f"container {name}"
    ports = {str(p["name"]): int(p["containerPort"]) for p in raw.get("ports") or () if p.get("name")}
    mounts = []
    for mount in raw.get("volumeMounts") or ():
        if mount["name"] not in volumes:
            raise Refused(CONFIG_ERROR, f"{where}: volumeMount {mount['name']!r} names no volume")
        if mount.get("subPathExpr"):
            raise Refused(CONFIG_ERROR, f"{where}: subPathExpr is not supported")
        mounts.append(Mount(volume=str(mount["name"]), mount_path=posixpath.normpath(str(mount["mountPath"])),
                            sub_path=str(mount.get("subPath") or "")))
    env_from = []
    for source in raw.get("envFrom") or ():
        for field, kind in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
            if (ref := source.get(field)) is not None:
                env_from.append(EnvFrom(kind=kind, name=str(ref["name"]),  # type: ignore[arg-type]
                                        prefix=str(source.get("prefix") or ""), optional=bool(ref.get("optional"))))
    return Container(
        name=name,
        image=str(raw.get("image") or ""),
        command=map_command(raw.get("command") or (), raw.get("args") or (), str(raw.get("image") or ""), where),
        env=tuple(_env(e, where) for e in raw.get("env") or ()),
        env_from=tuple(env_from),
        mounts=tuple(mounts),
        ports=tuple(int(p["containerPort"]) for p in raw.get("ports") or ()),
        readiness=_probe(raw.get("readinessProbe"), ports, f"{where} readinessProbe"),
        liveness=_probe(raw.get("livenessProbe"), ports, f"{where} livenessProbe"),
    )


def _keyed(kind: ObjectKind, raw: Mapping[str, Any], name_field: str) -> KeyedSource:
    items = raw.get("items")
    return KeyedSource(
        kind=kind,
        name=str(raw.get(name_field) or ""),
        items=None if items is None else tuple((str(i["key"]), str(i["path"])) for i in items),
        optional=bool(raw.get("optional")),
    )


def _downward(items: Sequence[Mapping[str, Any]], where: str) -> tuple[DownwardItem, ...]:
    out = []
    for item in items:
        if "fieldRef" not in item:
            raise Refused(CONFIG_ERROR, f"{where}: only fieldRef downwardAPI items are supported")
        out.append(DownwardItem(path=str(item["path"]), field_path=_field_path(item["fieldRef"]["fieldPath"], where)))
    return tuple(out)


def _volume(raw: Mapping[str, Any]) -> Volume:
    name = str(raw["name"])
    where = f"volume {name}"
    if (source := raw.get("configMap")) is not None:
        return Volume(name=name, kind="files", keyed=(_keyed("configmaps", source, "name"),),
                      mode=int(source.get("defaultMode") or 0o644))
    if (source := raw.get("secret")) is not None:
        return Volume(name=name, kind="files", keyed=(_keyed("secrets", source, "secretName"),),
                      mode=int(source.get("defaultMode") or 0o644))
    if "emptyDir" in raw:
        return Volume(name=name, kind="emptyDir")
    if (source := raw.get("hostPath")) is not None:
        return Volume(name=name, kind="hostPath", host_path=str(source["path"]))
    if (source := raw.get("downwardAPI")) is not None:
        return Volume(name=name, kind="files", downward=_downward(source.get("items") or (), where))
    if (source := raw.get("projected")) is not None:
        keyed: list[KeyedSource] = []
        downward: list[DownwardItem] = []
        tokens: list[TokenSource] = []
        for part in source.get("sources") or ():
            if (ref := part.get("configMap")) is not None:
                keyed.append(_keyed("configmaps", ref, "name"))
            elif (ref := part.get("secret")) is not None:
                keyed.append(_keyed("secrets", ref, "name"))
            elif (ref := part.get("downwardAPI")) is not None:
                downward.extend(_downward(ref.get("items") or (), where))
            elif (ref := part.get("serviceAccountToken")) is not None:
                tokens.append(TokenSource(path=str(ref["path"]), audience=ref.get("audience"),
                                          expiration_s=int(ref.get("expirationSeconds") or 3600)))
            else:
                raise Refused(CONFIG_ERROR, f"{where}: projected source {sorted(part)} is not supported")
        return Volume(name=name, kind="files", keyed=tuple(keyed), downward=tuple(downward), tokens=tuple(tokens),
                      mode=int(source.get("defaultMode") or 0o644))
    kinds = sorted(set(raw) - {"name"})
    raise Refused(CONFIG_ERROR, f"{where}: volume type {', '.join(kinds) or '?'} is not supported by the "
                                "local node agent (configMap, secret, emptyDir, hostPath, downwardAPI, projected)")


def parse_pod(pod: Mapping[str, Any]) -> PodPlan:
    """The pod as the agent runs it; raises Refused when some part of it cannot run here."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    if spec.get("initContainers"):
        raise Refused(CREATE_ERROR, "init containers are not supported by the local node agent")
    volumes = {v.name: v for v in (_volume(raw) for raw in spec.get("volumes") or ())}
    containers = tuple(_container(raw, volumes) for raw in spec.get("containers") or ())
    if not containers:
        raise Refused(CREATE_ERROR, "the pod has no containers")
    targets: dict[str, tuple[str, str]] = {}
    for container in containers:
        for mount in container.mounts:
            target = (mount.volume, mount.sub_path)
            if targets.setdefault(mount.mount_path, target) != target:
                raise Refused(CONFIG_ERROR, f"mount path {mount.mount_path} is used for different volumes; "
                                            "containers share one directory tree on the local node")
    return PodPlan(
        uid=str(meta.get("uid") or ""),
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        containers=containers,
        volumes=tuple(volumes.values()),
        restart_policy=spec.get("restartPolicy") or "Always",
        service_account=str(spec.get("serviceAccountName") or "default"),
    )

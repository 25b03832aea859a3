"""The Pod Security Standards ("baseline" and "restricted" profiles) as a pure check of a pod spec."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

# Volume types the restricted profile allows.
RESTRICTED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
# Capabilities the baseline profile lets a container add.
BASELINE_CAPABILITIES = frozenset(
    {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
     "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
)
SAFE_SYSCTLS = frozenset(
    {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
     "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
     "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
     "net.ipv4.tcp_keepalive_probes"}
)


def containers(pod: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod.get(key) or []


def restricted_violations(pod: Mapping[str, Any]) -> list[str]:
    """Every rule of the restricted profile (which includes baseline) that `pod` breaks; [] when none."""
    out: list[str] = []
    psc = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            out.append(f"{flag} is set")
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"sysctl {sysctl.get('name')} is not in the safe set")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("pod is a Windows host process")
    out.extend(_seccomp_violations(psc.get("seccompProfile"), "pod"))
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            out.append(f"volume {volume.get('name')} has a type outside the restricted set: {sorted(kinds)}")
    pod_non_root = psc.get("runAsNonRoot") is True
    if psc.get("runAsUser") == 0:
        out.append("pod runAsUser is 0")
    for container in containers(pod):
        name = container.get("name")
        csc = container.get("securityContext") or {}
        if csc.get("privileged"):
            out.append(f"{name}: privileged")
        if csc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation is not false")
        if not (csc.get("runAsNonRoot") is True or (pod_non_root and csc.get("runAsNonRoot") is None)):
            out.append(f"{name}: runAsNonRoot is not true")
        if csc.get("runAsUser") == 0:
            out.append(f"{name}: runAsUser is 0")
        caps = csc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities do not drop ALL")
        for cap in caps.get("add") or []:
            if cap != "NET_BIND_SERVICE":
                out.append(f"{name}: adds capability {cap}")
            if cap not in BASELINE_CAPABILITIES:
                out.append(f"{name}: adds capability {cap} outside the baseline set")
        profile = csc.get("seccompProfile")
        if profile is not None or psc.get("seccompProfile") is None:
            out.extend(_seccomp_violations(profile, str(name)))
        if csc.get("procMount") not in (None, "Default"):
            out.append(f"{name}: procMount is {csc.get('procMount')}")
        se_type = (csc.get("seLinuxOptions") or {}).get("type")
        if se_type not in (None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"):
            out.append(f"{name}: SELinux type {se_type}")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"{name}: hostPort {port.get('hostPort')}")
    return out


def _seccomp_violations(profile: Mapping[str, Any] | None, owner: str) -> list[str]:
    if profile is None:
        return [] if owner == "pod" else [f"{owner}: no seccompProfile (neither on the pod nor the container)"]
    if profile.get("type") not in ("RuntimeDefault", "Localhost"):
        return [f"{owner}: seccompProfile type is {profile.get('type')}"]
    return []


def read_only_root_violations(pod: Mapping[str, Any]) -> list[str]:
    """Containers whose root filesystem is writable (not a Pod Security rule, but this project's)."""
    return [
        f"{container.get('name')}: readOnlyRootFilesystem is not true"
        for container in containers(pod)
        if (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True
    ]

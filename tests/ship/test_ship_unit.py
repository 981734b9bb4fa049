"""The system unit keeps every sandboxing option out that host-requested commands would inherit
(issue 15 item 1): under qemu-ga a guest-exec child is a plain root process of the guest, with
the guest's mount namespace, no seccomp filter and no personality lock."""

from __future__ import annotations

from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "packaging/systemd/concierge.service"

#: options that create a mount namespace, a seccomp filter or NoNewPrivs for the unit's process
#: tree (systemd.exec(5)); any of them changes what a guest-exec child can do or see
INHERITED_SANDBOX = {
    "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateNetwork", "PrivateIPC",
    "PrivateMounts", "PrivateUsers", "ProtectControlGroups", "ProtectKernelTunables",
    "ProtectKernelModules", "ProtectKernelLogs", "ProtectClock", "ProtectHostname", "ProtectProc",
    "ProcSubset", "ReadOnlyPaths", "ReadWritePaths", "InaccessiblePaths", "ExecPaths", "NoExecPaths",
    "TemporaryFileSystem", "BindPaths", "BindReadOnlyPaths", "MountFlags", "RootDirectory", "RootImage",
    "SystemCallFilter", "SystemCallArchitectures", "SystemCallLog", "LockPersonality", "RestrictRealtime",
    "RestrictNamespaces", "RestrictAddressFamilies", "RestrictSUIDSGID", "RestrictFileSystems",
    "MemoryDenyWriteExecute", "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities",
    "Personality", "DynamicUser", "NetworkNamespacePath", "IPCNamespacePath",
}  # fmt: skip


def directives() -> dict[str, str]:
    found: dict[str, str] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def test_unit_sets_nothing_children_would_inherit() -> None:
    present = sorted(set(directives()) & INHERITED_SANDBOX)
    assert present == [], f"{UNIT.name} sandboxes guest-exec children: {present}"


def test_unit_keeps_its_own_oom_protection() -> None:
    assert directives()["OOMScoreAdjust"] == "-500"  # children get 0: concierge.actors.guestproc

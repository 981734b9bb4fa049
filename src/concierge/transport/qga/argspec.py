"""The argument specs of the 43 Linux QGA commands, written from the upstream QAPI schema.

``COMMANDS`` is in the order qemu-ga lists them in ``guest-info`` (reverse schema order).
Member names starting with ``*`` are optional. Types: ``int`` (int64), ``uint64``, ``str``,
``bool``, ``[T]`` (a one-element list), or a name from ``STRUCTS``, ``ENUMS``, ``ALTERNATES``.
``guest-get-devices`` is Windows-only: listed but disabled, as qemu-ga 7.2
does on Linux. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TypeSpec = Any  # str | list[TypeSpec]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command: its arguments and whether qemu-ga answers a success."""

    name: str
    args: dict[str, TypeSpec]
    success_response: bool = True
    #: compiled into qemu-ga 7.2 on Linux but always disabled (Windows-only)
    windows_only: bool = False


def _c(name: str, args: dict[str, TypeSpec] | None = None, *, silent: bool = False) -> CommandSpec:
    return CommandSpec(name, args or {}, not silent)


COMMANDS: tuple[CommandSpec, ...] = (
    _c("guest-network-get-route"),
    _c("guest-get-load"),
    _c("guest-get-cpustats"),
    _c("guest-get-diskstats"),
    _c("guest-ssh-remove-authorized-keys", {"username": "str", "keys": ["str"]}),
    _c("guest-ssh-add-authorized-keys", {"username": "str", "keys": ["str"], "*reset": "bool"}),
    _c("guest-ssh-get-authorized-keys", {"username": "str"}),
    CommandSpec("guest-get-devices", {}, windows_only=True),
    _c("guest-get-osinfo"),
    _c("guest-get-timezone"),
    _c("guest-get-users"),
    _c("guest-get-host-name"),
    _c(
        "guest-exec",
        {
            "path": "str",
            "*arg": ["str"],
            "*env": ["str"],
            "*input-data": "str",
            "*capture-output": "GuestExecCaptureOutput",
        },
    ),
    _c("guest-exec-status", {"pid": "int"}),
    _c("guest-get-memory-block-info"),
    _c("guest-set-memory-blocks", {"mem-blks": ["GuestMemoryBlock"]}),
    _c("guest-get-memory-blocks"),
    _c("guest-set-user-password", {"username": "str", "password": "str", "crypted": "bool"}),
    _c("guest-get-fsinfo"),
    _c("guest-get-disks"),
    _c("guest-set-vcpus", {"vcpus": ["GuestLogicalProcessor"]}),
    _c("guest-get-vcpus"),
    _c("guest-network-get-interfaces"),
    _c("guest-suspend-hybrid", silent=True),
    _c("guest-suspend-ram", silent=True),
    _c("guest-suspend-disk", silent=True),
    _c("guest-fstrim", {"*minimum": "int"}),
    _c("guest-fsfreeze-thaw"),
    _c("guest-fsfreeze-freeze-list", {"*mountpoints": ["str"]}),
    _c("guest-fsfreeze-freeze"),
    _c("guest-fsfreeze-status"),
    _c("guest-file-flush", {"handle": "int"}),
    _c("guest-file-seek", {"handle": "int", "offset": "int", "whence": "GuestFileWhence"}),
    _c("guest-file-write", {"handle": "int", "buf-b64": "str", "*count": "int"}),
    _c("guest-file-read", {"handle": "int", "*count": "int"}),
    _c("guest-file-close", {"handle": "int"}),
    _c("guest-file-open", {"path": "str", "*mode": "str"}),
    _c("guest-shutdown", {"*mode": "str"}, silent=True),
    _c("guest-info"),
    _c("guest-set-time", {"*time": "int"}),
    _c("guest-get-time"),
    _c("guest-ping"),
    _c("guest-sync", {"id": "int"}),
    _c("guest-sync-delimited", {"id": "int"}),
)

BY_NAME: dict[str, CommandSpec] = {spec.name: spec for spec in COMMANDS}
#: the 43 commands a Linux agent implements
LINUX_COMMANDS: tuple[str, ...] = tuple(spec.name for spec in COMMANDS if not spec.windows_only)

STRUCTS: dict[str, dict[str, TypeSpec]] = {
    "GuestLogicalProcessor": {"logical-id": "int", "online": "bool", "*can-offline": "bool"},
    "GuestMemoryBlock": {"phys-index": "uint64", "online": "bool", "*can-offline": "bool"},
}

ENUMS: dict[str, tuple[str, ...]] = {
    "QGASeek": ("set", "cur", "end"),
    "GuestExecCaptureOutputMode": ("none", "stdout", "stderr", "separated", "merged"),
}

#: alternate -> (JSON kind -> branch type); kinds: "int" (any number), "str", "bool"
ALTERNATES: dict[str, dict[str, TypeSpec]] = {
    "GuestFileWhence": {"int": "int", "str": "QGASeek"},
    "GuestExecCaptureOutput": {"bool": "bool", "str": "GuestExecCaptureOutputMode"},
}

#: answered by the front-end itself, never routed
PROTOCOL_COMMANDS = frozenset({"guest-sync", "guest-sync-delimited", "guest-ping", "guest-info"})

#: qemu-ga's hard-coded list of commands allowed while filesystems are frozen
FREEZE_ALLOWED = frozenset(
    {
        "guest-ping",
        "guest-info",
        "guest-sync",
        "guest-sync-delimited",
        "guest-fsfreeze-status",
        "guest-fsfreeze-thaw",
    }
)

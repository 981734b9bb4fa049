"""Probes behind ``concierge doctor``: ports, stock agents, uinput, logind, displays, policy.

Each probe returns :class:`Finding` values and never raises for a missing facility: a guest
without logind or without a display is a normal guest. Paths are injectable through
:class:`HostView` so tests can point the probes at a fake ``/sys`` tree; processes are real
(psutil), the system bus is whatever ``DBUS_SYSTEM_BUS_ADDRESS`` names.
Must not import the runtime, ZeroMQ or any actor.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection

OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"
SEVERITY = {OK: 0, INFO: 0, WARN: 1, FAIL: 2}

# port name -> protocol served there
PORTS: dict[str, str] = {
    "org.qemu.guest_agent.0": "qga",
    "com.redhat.spice.0": "spice",
    "ovirt-guest-agent.0": "ovirt",
    "com.redhat.rhevm.vdsm": "ovirt",
}

# The agents Concierge replaces: process names and systemd units.
STOCK_AGENTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("qemu-ga", ("qemu-ga",), ("qemu-guest-agent.service",)),
    ("spice-vdagentd", ("spice-vdagentd",), ("spice-vdagentd.service", "spice-vdagentd.socket")),
    ("spice-vdagent", ("spice-vdagent",), ()),
    ("ovirt-guest-agent", ("ovirt-guest-agent",), ("ovirt-guest-agent.service",)),
)


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's report."""

    area: str
    name: str
    status: str
    detail: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HostView:
    """Where the probes look; the defaults are the real machine."""

    sys_root: Path = Path("/sys")
    dev_root: Path = Path("/dev")
    proc_root: Path = Path("/proc")
    run_user: Path = Path("/run/user")
    x11_dir: Path = Path("/tmp/.X11-unix")  # noqa: S108 - fixed by the X11 convention
    systemctl: str | None = field(default_factory=lambda: shutil.which("systemctl"))
    #: where /etc is looked up (qemu-ga's configuration, our drop-ins)
    root: Path = Path("/")
    bus_timeout_s: float = 2.0


def _holders(view: HostView, device: Path) -> list[tuple[int, str]]:
    """Processes that have ``device`` open (pid, name), read from /proc/PID/fd."""
    try:
        target = device.resolve()
    except OSError:
        return []
    found: list[tuple[int, str]] = []
    for proc in psutil.process_iter(["pid", "name"]):
        fd_dir = view.proc_root / str(proc.info["pid"]) / "fd"
        with contextlib.suppress(OSError):
            for entry in os.scandir(fd_dir):
                with contextlib.suppress(OSError):
                    if os.readlink(entry.path) == str(target):
                        found.append((proc.info["pid"], proc.info["name"] or "?"))
                        break
    return found


def probe_ports(view: HostView) -> Iterator[Finding]:
    """Which virtio-serial ports exist, and whether another process already holds one."""
    base = view.sys_root / "class" / "virtio-ports"
    seen: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for entry in sorted(base.iterdir()):
            with contextlib.suppress(OSError):
                seen[(entry / "name").read_text().strip()] = entry.name
    for name, protocol in PORTS.items():
        if name not in seen:
            if name != "com.redhat.rhevm.vdsm":
                yield Finding(
                    "ports",
                    name,
                    INFO,
                    f"absent ({protocol} host not attached)",
                    {"present": False, "protocol": protocol},
                )
            continue
        device = view.dev_root / seen[name]
        holders = [h for h in _holders(view, device) if h[0] != os.getpid()]
        # Our actor processes are Python interpreters named cc-<actor> (or carry the concierge name).
        ours = [h for h in holders if h[1].startswith(("concierge", "python", "cc-"))]
        data = {
            "present": True,
            "protocol": protocol,
            "device": str(device),
            "holders": [{"pid": p, "name": n} for p, n in holders],
        }
        if holders and not ours:
            who = ", ".join(f"{n} (pid {p})" for p, n in holders)
            yield Finding("ports", name, FAIL, f"{device} held by {who}", data)
        elif holders:
            yield Finding("ports", name, OK, f"{device} open by the agent", data)
        else:
            yield Finding("ports", name, OK, f"{device} present, not open", data)
    for name in sorted(set(seen) - set(PORTS)):
        yield Finding("ports", name, INFO, f"other port /dev/{seen[name]}", {"present": True})


def _unit_state(view: HostView, unit: str) -> str | None:
    """``systemctl is-active`` of a unit, or None when systemd is not usable here."""
    if not view.systemctl:
        return None
    try:
        result = subprocess.run(
            [view.systemctl, "is-active", unit],
            capture_output=True,
            text=True,
            timeout=view.bus_timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    state = result.stdout.strip()
    if not state or "not been booted" in result.stderr or "Failed to connect" in result.stderr:
        return None
    return state


def probe_stock_agents(view: HostView) -> Iterator[Finding]:
    """Stock agents running (by process name) or active (by unit): each one contends for a port."""
    names: dict[str, list[int]] = {}
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        argv0 = os.path.basename(cmd[0]) if cmd else ""
        script = os.path.basename(cmd[1]) if len(cmd) > 1 else ""
        for key in {proc.info["name"] or "", argv0, script}:
            names.setdefault(key, []).append(proc.info["pid"])
    for agent, procs, units in STOCK_AGENTS:
        pids = sorted({pid for p in procs for pid in names.get(p, [])})
        active = [u for u in units if _unit_state(view, u) in ("active", "activating")]
        data = {"pids": pids, "active_units": active}
        if pids or active:
            where = ", ".join([*(f"pid {p}" for p in pids), *active])
            level = WARN if agent == "spice-vdagent" else FAIL
            yield Finding(
                "stock-agents", agent, level, f"running ({where}): conflicts with concierge; stop and disable it", data
            )
        else:
            yield Finding("stock-agents", agent, OK, "not running", data)


def probe_uinput(view: HostView) -> Iterator[Finding]:
    """Whether the input actor could create its virtual tablet."""
    path = view.dev_root / "uinput"
    if not path.exists():
        yield Finding("devices", "uinput", WARN, f"{path} missing (modprobe uinput)")
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as err:
        yield Finding("devices", "uinput", WARN, f"{path}: {os.strerror(err.errno or errno.EIO)}")
        return
    os.close(fd)
    yield Finding("devices", "uinput", OK, f"{path} writable")


def _list_sessions(timeout_s: float) -> list[tuple[Any, ...]]:
    login1 = DBusAddress(
        "/org/freedesktop/login1", bus_name="org.freedesktop.login1", interface="org.freedesktop.login1.Manager"
    )
    with open_dbus_connection(bus="SYSTEM") as conn:
        reply = conn.send_and_get_reply(new_method_call(login1, "ListSessions"), timeout=timeout_s)
    if reply.header.message_type.name == "error":
        raise RuntimeError(str(reply.body[0]) if reply.body else "D-Bus error")
    sessions: list[tuple[Any, ...]] = reply.body[0]
    return sessions


def probe_logind(view: HostView) -> Iterator[Finding]:
    """Whether logind answers on the system bus (sessions, lock, logoff need it)."""
    try:
        sessions = _list_sessions(view.bus_timeout_s)
    except (FileNotFoundError, ConnectionRefusedError):
        yield Finding("services", "logind", WARN, "unusable: no system D-Bus to reach logind")
        return
    except Exception as err:  # noqa: BLE001 - any bus failure means "unusable", with its reason
        yield Finding("services", "logind", WARN, f"unusable: {type(err).__name__}: {err}"[:200])
        return
    users = sorted({str(s[2]) for s in sessions})
    yield Finding(
        "services",
        "logind",
        OK,
        f"{len(sessions)} session(s)" + (f" ({', '.join(users)})" if users else ""),
        {"sessions": len(sessions), "users": users},
    )


def _connectable(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def probe_displays(view: HostView) -> Iterator[Finding]:
    """X11 and Wayland display sockets that accept a connection (the session agent needs one)."""
    found: list[str] = []
    with contextlib.suppress(OSError):
        for sock_path in sorted(view.x11_dir.glob("X*")):
            if _connectable(sock_path):
                found.append(f":{sock_path.name[1:]}")
    with contextlib.suppress(OSError):
        for sock_path in sorted(view.run_user.glob("*/wayland-*")):
            if not sock_path.name.endswith(".lock") and _connectable(sock_path):
                found.append(f"wayland {sock_path}")
    if found:
        yield Finding("services", "display", OK, ", ".join(found), {"displays": found})
    else:
        yield Finding("services", "display", INFO, "no display server (headless guest)", {"displays": []})


def probe_policy(config: Mapping[str, Any]) -> Iterator[Finding]:
    """What the configuration switches off: disabled actors and blocked or allow-listed commands."""
    actors = config.get("actors", {})
    if not isinstance(actors, Mapping):
        yield Finding("policy", "actors", FAIL, "config 'actors' is not a table")
        return
    disabled = sorted(
        str(name)
        for name, spec in actors.items()
        if isinstance(spec, Mapping) and (spec.get("enabled") is False or spec.get("entry", None) in ("", False))
    )
    yield Finding(
        "policy",
        "actors",
        INFO if disabled else OK,
        "disabled: " + ", ".join(disabled) if disabled else "all actors enabled",
        {"disabled": disabled},
    )
    for name, spec in sorted(actors.items()):
        settings = spec.get("settings", {}) if isinstance(spec, Mapping) else {}
        if not isinstance(settings, Mapping):
            continue
        for key, value in sorted(settings.items()):
            lowered = str(key).lower()
            if not isinstance(value, list) or not value:
                continue
            if lowered.startswith(("block", "deny", "disable")):
                yield Finding(
                    "policy", f"{name}.{key}", INFO, "blocked: " + ", ".join(map(str, value)), {"blocked": value}
                )
            elif lowered.startswith("allow"):
                yield Finding(
                    "policy", f"{name}.{key}", INFO, "only allowed: " + ", ".join(map(str, value)), {"allowed": value}
                )

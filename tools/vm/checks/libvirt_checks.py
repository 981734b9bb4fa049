"""What libvirt users run against a guest agent, each returning what a user would compare.

Every check goes through `virsh` only. Each returns ``(observed, detail)``: ``observed`` is what
must be the same for stock qemu-ga and for the agent under test (volatile values such as clocks,
used bytes and login times are reduced to what is stable), ``detail`` what is only reported.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from libvirt_host import LibvirtGuest, virsh

Observed = tuple[Any, str]

# guestinfo keys whose values change between two boots of the same image or two seconds.
VOLATILE = re.compile(r"^(fs\.\d+\.(used-bytes|total-bytes)|users\.\d+\.login-time|load\..*)$")
# Commands libvirt sends to a guest agent (qemu_agent.c); both agents must enable them all.
LIBVIRT_USES = {
    "guest-ping",
    "guest-info",
    "guest-sync",
    "guest-shutdown",
    "guest-fsfreeze-freeze",
    "guest-fsfreeze-freeze-list",
    "guest-fsfreeze-thaw",
    "guest-fsfreeze-status",
    "guest-get-time",
    "guest-set-time",
    "guest-get-vcpus",
    "guest-set-vcpus",
    "guest-get-fsinfo",
    "guest-network-get-interfaces",
    "guest-set-user-password",
    "guest-get-users",
    "guest-get-osinfo",
    "guest-get-timezone",
    "guest-get-host-name",
    "guest-get-disks",
    "guest-ssh-get-authorized-keys",
    "guest-ssh-add-authorized-keys",
    "guest-ssh-remove-authorized-keys",
    "guest-exec",
    "guest-exec-status",
    "guest-suspend-disk",
    "guest-suspend-ram",
    "guest-suspend-hybrid",
}


def _ok(done: Any, what: str) -> str:
    if done.returncode != 0:
        raise RuntimeError(f"{what}: rc {done.returncode}: {done.stderr.strip()[:300]}")
    return str(done.stdout)


def ping(g: LibvirtGuest) -> Observed:
    reply = g.agent_command({"execute": "guest-ping"})
    return reply, json.dumps(reply)


def info(g: LibvirtGuest) -> Observed:
    ret = g.agent_command({"execute": "guest-info"})["return"]
    enabled = {c["name"] for c in ret["supported_commands"] if c.get("enabled")}
    missing = sorted(LIBVIRT_USES - enabled)
    return {"libvirt commands missing": missing}, f"version {ret['version']}, {len(enabled)} enabled"


def guestinfo(g: LibvirtGuest) -> Observed:
    text = _ok(virsh("guestinfo", g.name, timeout=90), "guestinfo")
    pairs = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            pairs[key.strip()] = value.strip()
    stable = {k: ("<varies>" if VOLATILE.match(k) else v) for k, v in sorted(pairs.items())}
    return stable, f"{len(pairs)} keys"


def domifaddr(g: LibvirtGuest) -> Observed:
    text = _ok(virsh("domifaddr", g.name, "--source", "agent", "--full", timeout=60), "domifaddr")
    rows = sorted(" ".join(line.split()) for line in text.splitlines() if line.strip())
    return rows, "; ".join(rows)[:200]


def domfsinfo(g: LibvirtGuest) -> Observed:
    text = _ok(virsh("domfsinfo", g.name, timeout=60), "domfsinfo")
    rows = sorted(" ".join(line.split()) for line in text.splitlines() if line.strip())
    return rows, "; ".join(rows)[:200]


def freeze_thaw(g: LibvirtGuest) -> Observed:
    froze = _ok(virsh("domfsfreeze", g.name, timeout=90), "domfsfreeze").strip()
    try:
        status = g.agent_command({"execute": "guest-fsfreeze-status"})["return"]
    finally:
        thawed = _ok(virsh("domfsthaw", g.name, timeout=90), "domfsthaw").strip()
    after = g.agent_command({"execute": "guest-fsfreeze-status"})["return"]
    return [froze, status, thawed, after], f"{froze} / {thawed}"


def domtime(g: LibvirtGuest) -> Observed:
    """Get (within 30 s of the host: TCG guests drift), then --sync, then get again (within 5 s)."""

    def guest_time() -> int:
        text = _ok(virsh("domtime", g.name, timeout=60), "domtime")
        return int(re.search(r"(\d+)", text).group(1))  # type: ignore[union-attr]

    before = guest_time() - int(time.time())
    _ok(virsh("domtime", g.name, "--sync", timeout=60), "domtime --sync")
    after = guest_time() - int(time.time())
    return {
        "get within 30 s": abs(before) <= 30,
        "synced within 5 s": abs(after) <= 5,
    }, f"offset {before} s -> {after} s"


def set_user_password(g: LibvirtGuest) -> Observed:
    """Set root's password, then read back whether /etc/shadow holds a new crypt hash."""
    _, before, _ = g.guest_run(["/bin/sh", "-c", "getent shadow root | cut -d: -f2"])
    _ok(virsh("set-user-password", g.name, "root", "e2e-Secret-1", timeout=60), "set-user-password")
    _, after, _ = g.guest_run(["/bin/sh", "-c", "getent shadow root | cut -d: -f2"])
    changed = after.strip() != before.strip() and after.strip().startswith("$")
    return {"hash changed": changed}, f"hash prefix {after.strip()[:3]!r}"


def guestvcpus(g: LibvirtGuest) -> Observed:
    text = _ok(virsh("guestvcpus", g.name, timeout=60), "guestvcpus")
    rows = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    return rows, "; ".join(rows)


def _restart_agent_unit(g: LibvirtGuest, unit: str) -> None:
    """Through systemd-run, so the restart does not die with the agent that ran it; a second
    later, and without waiting for the exec's status: the agent may be gone before libvirt
    could collect it (that raced the restart)."""
    g.guest_spawn(
        [
            "systemd-run",
            "--quiet",
            "--no-block",
            "--unit=e2e-restart-agent",
            "/bin/sh",
            "-c",
            f"sleep 1; systemctl restart {unit}",
        ]
    )


def lifecycle_restart(g: LibvirtGuest) -> Observed:
    """agent-lifecycle events across a restart of the agent's unit."""
    assert g.events is not None
    mark = len(g.events.lines)
    _restart_agent_unit(g, "qemu-guest-agent.service" if g.agent == "stock" else "e2e-agent.service")
    seen = g.events.wait_for(["disconnected", "connected"], mark, timeout=240)
    g.wait_agent(timeout=240)
    return ["disconnected", "connected"], " -> ".join(seen)


KILL_TRANSPORT = (
    "pid=$(PYTHONPATH=/opt/concierge/src:/usr/lib/concierge/vendor python3 -m concierge --json status"
    ' | python3 -c \'import json,sys; print(next(a["pid"] for a in json.load(sys.stdin)["actors"]'
    ' if a["id"] == "transport"))\'); kill -9 $pid'
)


def lifecycle_kill9(g: LibvirtGuest) -> Observed:
    """agent-lifecycle events across a kill -9 of the process holding the port.

    Stock: qemu-ga itself (its unit restarts it: Restart=on-failure? reported as seen). Agent
    under test: the transport actor, which the supervisor restarts alone.
    """
    assert g.events is not None
    mark = len(g.events.lines)
    script = "kill -9 $(pidof qemu-ga)" if g.agent == "stock" else KILL_TRANSPORT
    g.guest_spawn(
        ["systemd-run", "--quiet", "--no-block", "--unit=e2e-kill-agent", "/bin/sh", "-c", f"sleep 1; {script}"]
    )
    try:
        seen = g.events.wait_for(["disconnected", "connected"], mark, timeout=120)
    except TimeoutError:
        return g.events.states(mark), "no reconnect after kill -9"
    g.wait_agent(timeout=120)
    return ["disconnected", "connected"], " -> ".join(seen)


def reboot_agent(g: LibvirtGuest) -> Observed:
    assert g.events is not None
    mark = len(g.events.lines)
    _ok(virsh("reboot", g.name, "--mode", "agent", timeout=120), "reboot --mode agent")
    seen = g.events.wait_for(["disconnected", "connected"], mark, timeout=400)
    g.wait_agent(timeout=300)
    return "rebooted, agent back", " -> ".join(seen)


def shutdown_agent(g: LibvirtGuest) -> Observed:
    _ok(virsh("shutdown", g.name, "--mode", "agent", timeout=120), "shutdown --mode agent")
    took = g.wait_gone(timeout=300)
    return "powered off", f"{took:.1f} s"


CHECKS: list[tuple[str, Callable[[LibvirtGuest], Observed]]] = [
    ("qemu-agent-command guest-ping", ping),
    ("qemu-agent-command guest-info", info),
    ("guestinfo (all groups)", guestinfo),
    ("domifaddr --source agent", domifaddr),
    ("domfsinfo", domfsinfo),
    ("domfsfreeze / domfsthaw", freeze_thaw),
    ("domtime (get, --sync)", domtime),
    ("set-user-password", set_user_password),
    ("guestvcpus", guestvcpus),
    ("agent-lifecycle: agent restart", lifecycle_restart),
    ("agent-lifecycle: kill -9 of the port's process", lifecycle_kill9),
    ("reboot --mode agent", reboot_agent),
    ("shutdown --mode agent", shutdown_agent),
]

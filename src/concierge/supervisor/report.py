"""What the supervisor tells the outside: the status snapshot and systemd's readiness.

Both read cached state only, so a stuck actor can never hang ``concierge status`` or hold
back READY=1. DORMANT actors count as up: the guest does not need them now.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from concierge import __version__
from concierge.supervisor.notify import SystemdNotifier
from concierge.supervisor.state import State

if TYPE_CHECKING:
    from concierge.supervisor.core import Supervisor

log = logging.getLogger("concierge.supervisor.core")
_UP = (State.RUNNING, State.DORMANT)


def status_of(sup: Supervisor) -> dict[str, Any]:
    """Cached state of every actor (never asks an actor anything)."""
    now = sup.clock.monotonic()
    actors = []
    for child in sup.children.values():
        actors.append(
            {
                "id": child.id,
                "state": str(child.state),
                "pid": child.pid or None,
                "restarts": child.restarts,
                "restarts_recent": child.window.recent(now),
                "uptime_s": round(now - child.running_since, 3)
                if child.running_since and child.state == State.RUNNING
                else 0.0,
                "last_exit": child.last_exit,
                "health": child.health,
                "detail": child.detail,
                "heartbeat_age_s": round(now - child.last_hb, 3) if child.pid else None,
                "essential": child.spec.essential,
                "waiting": child.state == State.BACKOFF and child.last_exit_class == "unavailable",
                "reason": child.why(),
                "dormant": child.dormant_reason if child.state == State.DORMANT else "",
                "wakes": child.wakes,
                "counters": child.counters,
            }
        )
    return {
        "version": __version__,
        "pid": os.getpid(),
        "uptime_s": round(now - sup.started_at, 3),
        "frozen": sup.frozen(),
        "runtime_dir": str(sup.layout.root),
        "restart_window": {
            "intensity": sup.config.supervisor.intensity,
            "period_s": sup.config.supervisor.period_s,
        },
        "actors": actors,
    }


def status_line(sup: Supervisor) -> str:
    """What ``systemctl status`` shows: ``3 channels, 4/7 actors running, 3 dormant, frozen``."""
    children = list(sup.children.values())
    running = sum(1 for c in children if c.state == State.RUNNING)
    dormant = sum(1 for c in children if c.state == State.DORMANT)
    waiting = sum(1 for c in children if c.state == State.BACKOFF and c.last_exit_class == "unavailable")
    fatal = sum(1 for c in children if c.state == State.FATAL)
    parts = []
    channels = sup.extra_settings.get("transport", {}).get("channels")
    if channels is not None:
        parts.append(f"{len(channels)} channel{'s' if len(channels) != 1 else ''}")
    parts.append(f"{running}/{len(children)} actors running")
    parts += [f"{dormant} dormant"] * bool(dormant)
    parts += [f"{waiting} waiting"] * bool(waiting) + [f"{fatal} FATAL"] * bool(fatal)
    parts += ["frozen"] * sup.frozen() + ["stopping"] * sup.stopping_all()
    return ", ".join(parts)


class Readiness:
    """READY=1 once every essential actor is up, STATUS= on every change of the summary,
    WATCHDOG=1 on time, and one log line when every actor the guest needs is running (how long
    start took, from exec included)."""

    def __init__(self, notifier: SystemdNotifier) -> None:
        self.notifier = notifier
        self.status_line = ""
        self.ready_sent = False
        self.all_up_logged = False
        self.last_watchdog = 0.0

    def tick(self, sup: Supervisor, now: float) -> None:
        """Called from every supervisor tick."""
        children = sup.children.values()
        if not self.ready_sent and all(c.state in _UP for c in children if c.spec.essential):
            self.ready_sent = True
            self.status_line = status_line(sup)
            self.notifier.notify("READY=1", f"STATUS={self.status_line}")
            log.info("agent ready", extra={"event": "agent.ready"})
        if not self.all_up_logged and all(c.state in _UP for c in children):
            self.all_up_logged = True
            elapsed_ms = round((now - sup.started_at) * 1000, 1)
            since_exec_ms = round(since_exec_s() * 1000)
            log.info(
                "all actors running after %s ms (%s ms since the process started)",
                elapsed_ms,
                since_exec_ms,
                extra={"event": "agent.all_running", "elapsed_ms": elapsed_ms, "since_exec_ms": since_exec_ms},
            )
        if self.ready_sent and (line := status_line(sup)) != self.status_line:
            self.status_line = line  # one datagram per change of the summary
            self.notifier.notify(f"STATUS={line}")
        interval = self.notifier.watchdog_interval_s()
        if interval and now - self.last_watchdog >= interval:
            self.last_watchdog = now
            self.notifier.notify("WATCHDOG=1")


def since_exec_s() -> float:
    """Seconds since this process was created (interpreter start and imports included), from
    its start time in clock ticks since boot; 0 when /proc cannot tell."""
    try:
        with open("/proc/self/stat") as stat:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            up_s = float(uptime.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, up_s - start_ticks / os.sysconf("SC_CLK_TCK"))

"""What the operator CLI prints for people: the status table, action outcomes, wait progress.

Kept apart from argument parsing so the text can be tested without an agent. Any state the
supervisor reports is rendered, including ones this CLI does not know (printed as they come).
"""

from __future__ import annotations

from typing import Any

#: ``--wait`` exit statuses (documented in concierge(1)): every actor reached what was asked,
#: one went FATAL (or stopped instead of starting), one waits for something absent on this guest
WAIT_OK, WAIT_FAILED, WAIT_WAITING = 0, 4, 5

_COLOURS = {"RUNNING": "32", "FATAL": "31", "BACKOFF": "33", "STARTING": "36", "WAITING": "33"}
_DONE_WORD = {"start": "started", "stop": "stopped", "restart": "restarted"}
_ING_WORD = {"start": "starting", "stop": "stopping", "restart": "restarting"}


def table(rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def uptime(seconds: float) -> str:
    """``1h02m``, ``3m05s``, ``4.2s`` or ``-``."""
    if not seconds:
        return "-"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s" if minutes else f"{seconds:.1f}s"


def colour(state: str, tty: bool) -> str:
    """``state`` in its ANSI colour on a terminal."""
    code = _COLOURS.get(state) if tty else None
    return f"\033[{code}m{state}\033[0m" if code else state


def shown_state(actor: dict[str, Any]) -> str:
    """WAITING for an actor retried on parole because something it needs is absent."""
    return "WAITING" if actor.get("waiting") else str(actor.get("state", "?"))


def render_status(result: dict[str, Any], tty: bool) -> str:
    """The status table, then one line per actor that is not running saying why, then what
    RESTARTS counts (the recent figure is the one that turns an actor FATAL)."""
    rows = [["ACTOR", "STATE", "PID", "UPTIME", "RESTARTS", "HEALTH", "LAST EXIT"]]
    states = []
    notes = []
    for actor in result["actors"]:
        state = shown_state(actor)
        states.append(state)
        running = actor.get("state") == "RUNNING"
        rows.append(
            [
                str(actor["id"]),
                state,
                str(actor.get("pid") or "-"),
                uptime(actor.get("uptime_s", 0.0)) if running else "-",
                f"{actor.get('restarts_recent', 0)}/{actor.get('restarts', 0)}",
                str(actor.get("health", "?")) + (f" ({actor['detail']})" if actor.get("detail") and running else ""),
                actor.get("last_exit") or "-",
            ]
        )
        reason = actor.get("reason") or ("" if running else actor.get("detail", ""))
        if reason and not running:
            notes.append(f"{actor['id']}: {state.lower()}: {reason}")
    lines = table(rows).splitlines()
    if tty:  # colour the STATE cell only (widths were computed on the plain text)
        col = lines[0].index("STATE")
        for i, state in enumerate(states, start=1):
            cell = lines[i][col : col + len(state)]
            lines[i] = lines[i][:col] + colour(cell, tty) + lines[i][col + len(state) :]
    head = f"concierge {result['version']} pid {result['pid']} up {uptime(result['uptime_s'])}"
    head += " FROZEN" if result.get("frozen") else ""
    out = [head, *lines]
    if notes:
        out += ["", *notes]
    window = result.get("restart_window")
    if window and any(a.get("restarts") for a in result["actors"]):
        out.append(
            f"RESTARTS = recent/total: recent restarts within {window['period_s']:g} s "
            f"(more than {window['intensity']} makes an actor FATAL), total since the agent started"
        )
    return "\n".join(out)


def render_action(command: str, result: dict[str, Any]) -> str:
    """``monitor: restarting`` (sent) for start/stop/restart, or the ``--wait`` outcomes."""
    if "states" not in result:
        return "\n".join(f"{name}: {_ING_WORD[command]}" for name in result.get("actors", []))
    return "\n".join(
        wait_line(command, name, state, result.get("reasons", {}).get(name, ""))
        for name, state in result["states"].items()
    )


def wait_line(command: str, name: str, state: str, reason: str) -> str:
    """One actor's outcome: ``monitor: started``, ``sso: waiting: system bus unavailable``."""
    wanted = "STOPPED" if command == "stop" else "RUNNING"
    if state == wanted or (command == "stop" and state == "EXITED"):
        return f"{name}: {_DONE_WORD[command]}"
    return f"{name}: {state.lower()}" + (f": {reason}" if reason else "")


def wait_exit(command: str, result: dict[str, Any]) -> int:
    """0 all reached what was asked, 5 one is WAITING (and none failed), 4 otherwise."""
    wanted = {"STOPPED", "EXITED"} if command == "stop" else {"RUNNING"}
    states = set(result.get("states", {}).values())
    if states <= wanted:
        return WAIT_OK
    if states - wanted <= {"WAITING"}:
        return WAIT_WAITING
    return WAIT_FAILED


def render_reload(result: dict[str, Any]) -> str:
    """``reloaded: added x; changed y`` or ``reloaded: no change``."""
    parts = [f"{what} {', '.join(result[what])}" for what in ("added", "changed", "removed") if result.get(what)]
    return "reloaded: " + ("; ".join(parts) if parts else "no change")


def render_metrics(result: dict[str, Any]) -> str:
    """Per-actor memory, CPU and message counters."""
    rows = [["ACTOR", "PID", "RSS MB", "PSS MB", "CPU s", "THREADS", "MSG IN/OUT"]]
    for actor in result["actors"]:
        c = actor.get("counters", {})
        rows.append(
            [
                actor["id"],
                str(actor["pid"] or "-"),
                f"{actor.get('rss_bytes', 0) / 1e6:.1f}",
                f"{actor.get('pss_bytes', 0) / 1e6:.1f}",
                str(actor.get("cpu_s", "-")),
                str(actor.get("threads", "-")),
                f"{c.get('msg.in', 0)}/{c.get('msg.out', 0)}",
            ]
        )
    return table(rows)

"""Render the supervisor's status snapshot as Prometheus text, and write node_exporter textfiles.

Input is the cached status the CLI already has (``concierge status --json`` shape)::

    {"uptime_s": 12.5,
     "actors": [{"id": "monitor", "state": "RUNNING", "pid": 4242, "restarts": 1,
                 "health": "ok", "rss_bytes": 31457280,
                 "counters": {"msgs_in": 10, "msgs_out": 9},
                 "latency": {"guest-ping": {"count": 9, "sum_s": 0.004,
                                            "p50_s": 0.0004, "p99_s": 0.001}}}]}

``latency`` is optional (request type -> summary); ``pid``, ``rss_bytes`` and ``health`` may be
``None`` for an actor that is not running. The ``concierge metrics`` reply adds per-process
samples (``pss_bytes``, ``cpu_s``, ``threads``, ``fds``) per actor, ``supervisor`` and
``forkserver`` samples and ``total_pss_bytes``; each is rendered when present.
Output follows the Prometheus text exposition format 0.0.4 (HELP/TYPE once per family,
escaped label values, counters end in ``_total``).
Standard library only; must not import the runtime, ZeroMQ or any actor.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

STATES = ("STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "DORMANT")
QUANTILES = (("p50_s", "0.5"), ("p90_s", "0.9"), ("p99_s", "0.99"))

_HELP: dict[str, tuple[str, str]] = {
    "concierge_up": ("gauge", "1 while the supervisor answers."),
    "concierge_uptime_seconds": ("gauge", "Seconds since the supervisor started."),
    "concierge_actors": ("gauge", "Number of actors in the catalog."),
    "concierge_actor_state": ("gauge", "1 for the actor's current state, 0 for the others."),
    "concierge_actor_up": ("gauge", "1 when the actor is RUNNING."),
    "concierge_actor_healthy": ("gauge", "1 when the actor reports itself healthy."),
    "concierge_actor_restarts_total": ("counter", "Restarts of the actor's process."),
    "concierge_actor_pid": ("gauge", "Process id of the actor (absent when not running)."),
    "concierge_actor_rss_bytes": ("gauge", "Resident memory of the actor's process."),
    "concierge_actor_pss_bytes": ("gauge", "Proportional set size of the actor's process."),
    "concierge_actor_cpu_seconds_total": ("counter", "CPU time (user + system) of the actor."),
    "concierge_actor_threads": ("gauge", "Threads in the actor's process."),
    "concierge_actor_open_fds": ("gauge", "Open file descriptors of the actor's process."),
    "concierge_process_rss_bytes": ("gauge", "Resident memory of the supervisor processes."),
    "concierge_process_pss_bytes": ("gauge", "Proportional set size of the supervisor processes."),
    "concierge_process_cpu_seconds_total": ("counter", "CPU time of the supervisor processes."),
    "concierge_pss_bytes": ("gauge", "PSS of the whole agent (supervisor, forkserver, actors)."),
    "concierge_actor_messages_total": ("counter", "Per-actor message counters, by name."),
    "concierge_actor_request_latency_seconds": (
        "summary",
        "Time to answer a request, by request type.",
    ),
}


_PROCESS_FIELDS = (
    ("pid", "concierge_actor_pid"),
    ("rss_bytes", "concierge_actor_rss_bytes"),
    ("pss_bytes", "concierge_actor_pss_bytes"),
    ("cpu_s", "concierge_actor_cpu_seconds_total"),
    ("threads", "concierge_actor_threads"),
    ("fds", "concierge_actor_open_fds"),
)


class StatusFormatError(ValueError):
    """The status snapshot does not have the documented shape."""


def escape_label(value: str) -> str:
    """Escape a label value as the exposition format requires (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """Render a sample value: integers without a fraction, +Inf/-Inf/NaN spelled as Prometheus."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def is_healthy(health: object) -> bool | None:
    """Map the health field (bool, ``"ok"``-style string or ``{"ok": bool}``) to a bool."""
    if health is None:
        return None
    if isinstance(health, bool):
        return health
    if isinstance(health, str):
        return health.strip().lower() in ("ok", "healthy", "up", "true", "pass", "passing")
    if isinstance(health, Mapping):
        ok = health.get("ok", health.get("healthy"))
        return bool(ok) if ok is not None else None
    return None


class _Families:
    """Collects samples per metric family so each family is printed once, in a stable order."""

    def __init__(self) -> None:
        self._samples: dict[str, list[str]] = {name: [] for name in _HELP}

    def add(self, family: str, value: float, labels: Mapping[str, str] | None = None, suffix: str = "") -> None:
        label_text = ""
        if labels:
            label_text = "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items()) + "}"
        self._samples[family].append(f"{family}{suffix}{label_text} {format_value(value)}")

    def render(self) -> str:
        lines: list[str] = []
        for family, samples in self._samples.items():
            if not samples:
                continue
            kind, text = _HELP[family]
            lines.append(f"# HELP {family} {text}")
            lines.append(f"# TYPE {family} {kind}")
            lines.extend(samples)
        return "\n".join(lines) + "\n"


def _number(actor: str, key: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StatusFormatError(f"actor {actor!r}: {key} must be a number, got {value!r}")
    return value


def _actors(status: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    actors = status.get("actors", [])
    if not isinstance(actors, list):
        raise StatusFormatError("status['actors'] must be a list")
    for index, actor in enumerate(actors):
        if not isinstance(actor, Mapping) or not isinstance(actor.get("id"), str):
            raise StatusFormatError(f"status['actors'][{index}] needs a string 'id'")
        yield actor


def _add_actor(out: _Families, actor: Mapping[str, Any]) -> None:
    name: str = actor["id"]
    who = {"actor": name}
    state = str(actor.get("state", "STOPPED")).upper()
    for candidate in (*STATES, *((state,) if state not in STATES else ())):
        out.add("concierge_actor_state", int(candidate == state), {**who, "state": candidate})
    out.add("concierge_actor_up", int(state == "RUNNING"), who)
    healthy = is_healthy(actor.get("health"))
    if healthy is not None:
        out.add("concierge_actor_healthy", int(healthy), who)
    restarts = _number(name, "restarts", actor.get("restarts", 0))
    out.add("concierge_actor_restarts_total", restarts or 0, who)
    for key, family in _PROCESS_FIELDS:
        value = _number(name, key, actor.get(key))
        if value is not None:
            out.add(family, value, who)
    counters = actor.get("counters") or {}
    if not isinstance(counters, Mapping):
        raise StatusFormatError(f"actor {name!r}: counters must be a mapping")
    for counter in sorted(counters):
        value = _number(name, f"counters[{counter!r}]", counters[counter])
        if value is not None:
            out.add("concierge_actor_messages_total", value, {**who, "counter": str(counter)})
    latency = actor.get("latency") or {}
    if not isinstance(latency, Mapping):
        raise StatusFormatError(f"actor {name!r}: latency must be a mapping")
    for rtype in sorted(latency):
        summary = latency[rtype]
        if not isinstance(summary, Mapping):
            raise StatusFormatError(f"actor {name!r}: latency[{rtype!r}] must be a mapping")
        labels = {**who, "type": str(rtype)}
        for key, quantile in QUANTILES:
            value = _number(name, f"latency[{rtype!r}].{key}", summary.get(key))
            if value is not None:
                out.add("concierge_actor_request_latency_seconds", value, {**labels, "quantile": quantile})
        for key, suffix in (("sum_s", "_sum"), ("count", "_count")):
            value = _number(name, f"latency[{rtype!r}].{key}", summary.get(key))
            if value is not None:
                out.add("concierge_actor_request_latency_seconds", value, labels, suffix)


def to_prometheus(status: Mapping[str, Any]) -> str:
    """Render a status snapshot as Prometheus text; :class:`StatusFormatError` on a bad shape."""
    if not isinstance(status, Mapping):
        raise StatusFormatError("status must be a mapping")
    out = _Families()
    out.add("concierge_up", 1)
    uptime = status.get("uptime_s")
    if uptime is not None:
        out.add("concierge_uptime_seconds", _number("(supervisor)", "uptime_s", uptime) or 0.0)
    for process in ("supervisor", "forkserver"):
        sample = status.get(process)
        if isinstance(sample, Mapping):
            for key, family in (
                ("rss_bytes", "concierge_process_rss_bytes"),
                ("pss_bytes", "concierge_process_pss_bytes"),
                ("cpu_s", "concierge_process_cpu_seconds_total"),
            ):
                value = _number(process, key, sample.get(key))
                if value is not None:
                    out.add(family, value, {"process": process})
    total = status.get("total_pss_bytes")
    if total is not None:
        out.add("concierge_pss_bytes", _number("(supervisor)", "total_pss_bytes", total) or 0)
    actors = list(_actors(status))
    out.add("concierge_actors", len(actors))
    for actor in sorted(actors, key=lambda a: str(a["id"])):
        _add_actor(out, actor)
    return out.render()


def write_textfile(path: str | os.PathLike[str], text: str) -> None:
    """Atomically replace ``path`` (node_exporter's textfile collector must never see half a file).

    The temporary file lives in the same directory (``rename`` is atomic only within one
    filesystem) and does not end in ``.prom``, so the collector ignores it until the rename.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

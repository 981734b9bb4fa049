"""Per-process memory and CPU figures from /proc (no psutil import in the supervisor)."""

from __future__ import annotations

import os
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


def sample(pid: int) -> dict[str, Any]:
    """RSS, PSS (kB -> bytes), threads, open fds and CPU seconds of ``pid``; {} if gone."""
    out: dict[str, Any] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    out[f"{key.lower()}_bytes"] = int(rest.split()[0]) * 1024
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out["threads"] = int(fields[17])
        out["cpu_s"] = round((int(fields[11]) + int(fields[12])) / _TICK, 2)
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, IndexError, ValueError):
        return out
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/PID/task/PID/children), parents first."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as fh:
                todo += [int(x) for x in fh.read().split()]
        except OSError:
            pass
    return out

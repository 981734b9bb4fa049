"""Which actors this guest needs now: requirements, on-demand wake-up and idle stop.

Pure decisions over a child's spec, its heartbeat counters and an injected clock; the
supervisor loop acts on them. Why: most guests that install the agent have one host channel
(the QGA port). Every actor process costs ~5 MB, so an actor whose channel or peer is absent
is never started, and a quiet one (guestops, sso, monitor, lifecycle on a QGA-only guest) is
started by the first request another actor sends it and stopped again after ``idle_stop_s``
without traffic, the way socket activation works. The requester's message waits in its
ZeroMQ queue meanwhile (bounded by its own deadline and the queue's HWM), so a command to a
dormant actor is answered late rather than refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Set
from typing import Any

from concierge.config.schema import ActorSection
from concierge.supervisor.state import State

#: the reason shown for an on-demand actor nobody asked for yet (or that went idle)
ON_DEMAND = "on demand"
IDLE = "idle: starts on the next request"


def unmet_requirement(spec: ActorSection, protocols: Set[str], exists: Callable[[str], bool] = os.path.exists) -> str:
    """The first requirement of ``spec`` this guest does not meet, said for people; "" if all hold.

    ``protocols`` are the protocols of the host channels that really exist here (a virtio port
    found, or a channel configured on purpose), not the fallback sockets of the default layout.
    """
    for requirement in spec.requires:
        kind, _, value = requirement.partition(":")
        if kind == "channel" and value not in protocols:
            return f"no {value} channel"
        if kind == "path" and not exists(value):
            return f"{value} is absent"
    return ""


def initial_reason(spec: ActorSection, protocols: Set[str], exists: Callable[[str], bool] = os.path.exists) -> str:
    """Why an actor is not started with the agent ("" = start it now)."""
    unmet = unmet_requirement(spec, protocols, exists)
    if unmet:
        return unmet
    return ON_DEMAND if spec.activation == "on-demand" else ""


def wakeable(spec: ActorSection, state: State, reason: str) -> bool:
    """A request may start this actor: it is dormant only because nobody needed it yet."""
    return state == State.DORMANT and spec.activation == "on-demand" and reason in (ON_DEMAND, IDLE)


class IdleClock:
    """When an on-demand actor last did something: a message received, or work it holds.

    Activity is read from the heartbeat: the bridge's ``msg.in`` counter (every request, cast
    and reply that reached the process) and ``hold``, the node's own reason to stay (an exec
    child running, an open file handle). Heartbeats come every ``heartbeat_interval_s``, so an
    actor is stopped between ``idle_stop_s`` and that much more after its last message.
    """

    def __init__(self) -> None:
        self.active_at = 0.0
        self.msg_in = -1
        self.hold = ""

    def reset(self, now: float) -> None:
        """The actor (re)started, or someone asked for it: count idleness from now."""
        self.active_at = now
        self.msg_in = -1
        self.hold = ""

    def observe(self, counters: Mapping[str, Any], hold: str, now: float) -> None:
        """Fold one heartbeat in."""
        seen = counters.get("msg.in", 0)
        seen = seen if isinstance(seen, int) else 0
        if seen != self.msg_in or hold:
            self.active_at = now
        self.msg_in = seen
        self.hold = hold

    def due(self, spec: ActorSection, now: float) -> bool:
        """True when an on-demand actor with an idle timeout has been idle long enough."""
        if spec.activation != "on-demand" or spec.idle_stop_s <= 0 or self.hold:
            return False
        return now - self.active_at >= spec.idle_stop_s

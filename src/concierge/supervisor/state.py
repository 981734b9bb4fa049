"""Actor states (supervisord's vocabulary) and the transitions allowed between them.

Pure: no zmq, no os. An illegal transition is a bug: it is logged and counted, never hidden.
"""

from __future__ import annotations

import enum


class State(enum.StrEnum):
    """Lifecycle of one supervised child."""

    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    EXITED = "EXITED"
    FATAL = "FATAL"


#: RUNNING/STARTING -> STOPPED: an actor that exits by itself once it is no longer wanted, before
#: it was asked to stop (the agent is shutting down and systemd signalled the whole cgroup)
ALLOWED: dict[State, frozenset[State]] = {
    State.STOPPED: frozenset({State.STARTING}),
    State.STARTING: frozenset({State.RUNNING, State.BACKOFF, State.STOPPING, State.FATAL, State.EXITED, State.STOPPED}),
    State.RUNNING: frozenset({State.BACKOFF, State.STOPPING, State.EXITED, State.FATAL, State.STOPPED}),
    State.BACKOFF: frozenset({State.STARTING, State.FATAL, State.STOPPED}),
    State.STOPPING: frozenset({State.STOPPED}),
    State.EXITED: frozenset({State.STARTING, State.STOPPED}),
    State.FATAL: frozenset({State.STARTING, State.STOPPED}),
}


def allowed(current: State, target: State) -> bool:
    """True when ``current -> target`` is a legal transition."""
    return target in ALLOWED[current]

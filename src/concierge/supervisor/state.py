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
    #: not running because the guest does not need it now: its channel, device or peer is
    #: absent, or it is on-demand and idle. A request for it starts it (unless a requirement
    #: is unmet); ``concierge start`` starts it too
    DORMANT = "DORMANT"


#: RUNNING/STARTING -> STOPPED: an actor that exits by itself once it is no longer wanted, before
#: it was asked to stop (the agent is shutting down and systemd signalled the whole cgroup)
#: RUNNING/STARTING -> DORMANT: an on-demand actor that exited cleanly by itself;
#: STOPPING -> DORMANT: an on-demand actor stopped because it was idle
ALLOWED: dict[State, frozenset[State]] = {
    State.STOPPED: frozenset({State.STARTING, State.DORMANT}),
    State.STARTING: frozenset(
        {State.RUNNING, State.BACKOFF, State.STOPPING, State.FATAL, State.EXITED, State.STOPPED, State.DORMANT}
    ),
    State.RUNNING: frozenset({State.BACKOFF, State.STOPPING, State.EXITED, State.FATAL, State.STOPPED, State.DORMANT}),
    State.BACKOFF: frozenset({State.STARTING, State.FATAL, State.STOPPED, State.DORMANT}),
    State.STOPPING: frozenset({State.STOPPED, State.DORMANT}),
    State.DORMANT: frozenset({State.STARTING, State.STOPPED, State.BACKOFF}),
    State.EXITED: frozenset({State.STARTING, State.STOPPED}),
    State.FATAL: frozenset({State.STARTING, State.STOPPED}),
}


def allowed(current: State, target: State) -> bool:
    """True when ``current -> target`` is a legal transition."""
    return target in ALLOWED[current]

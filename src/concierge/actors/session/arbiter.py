"""Session policy, pure: which agent is active, who may transfer files, who is refused.

No I/O: the gateway feeds it facts (agents, logind's active session) and applies the answers.
Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from concierge.transport.spice.messages import (
    XFER_DISABLED,
    XFER_SESSION_LOCKED,
    XFER_VDAGENT_NOT_CONNECTED,
)


@dataclass(slots=True)
class Agent:
    """One attached session process, as established by the gateway (never by the agent)."""

    key: int  # connection id
    uid: int
    pid: int
    start_time: int
    session_id: str = ""
    session_class: str = "user"
    locked: bool = False
    hello: bool = False  # hello received (identity lookup started)
    ready: bool = False  # welcomed
    monitors: list[dict[str, Any]] = field(default_factory=list)


def duplicate_of(agents: list[Agent], new: Agent) -> Agent | None:
    """Another ready agent of the same session (the "second agent" case: the new one loses)."""
    return next((a for a in agents if a.ready and a.key != new.key and a.session_id == new.session_id), None)


def pick_active(agents: list[Agent], logind_active: str | None) -> Agent | None:
    """The active agent.

    With logind (``logind_active`` is a string): the agent of seat0's active session, unless
    two agents claim it (possible info leak: nobody is active, as spice-vdagentd does). Without
    logind: the one connected agent, or nobody when there are several.
    """
    ready = [a for a in agents if a.ready]
    if logind_active is None:
        return ready[0] if len(ready) == 1 else None
    matching = [a for a in ready if a.session_id == logind_active and logind_active]
    return matching[0] if len(matching) == 1 else None


def file_xfer_refusal(active: Agent | None) -> int | None:
    """The FILE_XFER_STATUS result refusing a START, or None when the transfer may proceed."""
    if active is None:
        return XFER_VDAGENT_NOT_CONNECTED
    if active.locked:
        return XFER_SESSION_LOCKED
    if active.session_class != "user":
        return XFER_DISABLED  # greeter / lock-screen sessions never receive files
    return None

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


def agent_info(agent: Agent, active: bool) -> dict[str, Any]:
    """One agent as ``session.status`` shows it (``AgentInfo``)."""
    return {
        "uid": agent.uid,
        "pid": agent.pid,
        "session_id": agent.session_id,
        "session_class": agent.session_class,
        "locked": agent.locked,
        "active": active,
        "monitors": agent.monitors,
    }


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


def admission_refusal(
    peer_uid: int, endpoint_uid: int, same_uid: int, total: int, *, per_uid: int, overall: int
) -> str | None:
    """Why a freshly accepted connection must go at once, or None to keep it.

    ``same_uid`` and ``total`` count the connections already held (of the peer's uid, of
    everyone). Root may use any endpoint (an administrator's tools); the caps apply to it too.
    """
    if peer_uid not in (0, endpoint_uid):
        return f"uid {peer_uid} may not use the endpoint of uid {endpoint_uid}"
    if total >= overall:
        return f"the gateway holds its maximum of {overall} connections"
    if same_uid >= per_uid:
        return f"uid {peer_uid} already holds its maximum of {per_uid} connections"
    return None

"""Public API of the session gateway (config id ``session``) and its wire to session processes.

Actor messages (ZeroMQ runtime):

* from the transport actor's SPICE front-end: casts ``spice.<snake_name>`` with the bodies of
  ``concierge.transport.spice.messages`` (data in ``blobs[0]``). They go to the *active* session
  agent only; ``spice.monitors_config`` and ``spice.graphics_device_info`` are cached and
  re-sent to every newly active agent. ``spice.file_xfer_start`` is refused by the gateway
  itself (``spice.send file_xfer_status``) with VDAGENT_NOT_CONNECTED (no active agent),
  SESSION_LOCKED (logind LockedHint) or DISABLED (greeter session).
* to the transport actor: casts ``spice.send`` (an agent's guest->client message, only from
  the active agent).
* event ``session.spice_ready`` ``{"ready": bool}`` (published on change and every poll; the
  transport forwards ``session.*`` events to its front-ends): the port policy.
* to the input actor: cast ``input.geometry`` with the active agent's monitors.
* ``session.geometry`` (request from the input actor at its start, answered on the bridge
  thread, timeout 2 s) -> ``{"monitors": [...]}`` of the active agent ([] if none).
* ``session.status`` (request, answered on the bridge thread, timeout 1 s) -> ``StatusBody``.

Session wire (gateway <-> ``python -m concierge.actors.session.agent``): a unix *stream* socket
``RUNTIME_DIR/users/<uid>/session.sock`` (directory 0700 owned by the uid, socket 0600), framed
as ``u32 big-endian length`` + one msgpack map ``{"t": type, "b": body, "x": [blobs]}``. Frame
limits come from the protocol: a frame carries at most one vdagent message, so ``MAX_FRAME`` is
the SPICE reassembly limit (128 MiB, above spice-gtk's 100 MiB clipboard) plus ``FRAME_ENVELOPE``
for the msgpack map; before its welcome an agent may only send ``HANDSHAKE_FRAME`` bytes (hello
and geometry are tiny). The limit is checked on the 4-byte header, before any of the body is
buffered; a frame above it closes the connection. Chosen over ZeroMQ ipc because SO_PEERCRED needs the
connection's own socket (ZeroMQ hides it) and one stream per agent gives "connection gone =
agent gone" for free. Identity is the endpoint's uid and SO_PEERCRED, never a body field.

Agent -> gateway: ``hello`` ``Hello``; ``geometry`` ``GeometryBody``; ``spice.send`` (same body
as the actor cast). Gateway -> agent: ``welcome`` ``Welcome``; ``reject`` ``{"reason": str}``
then close; ``active`` ``{"active": bool, "file_xfer": bool}``; ``spice.<snake_name>`` as
received from the front-end.

Standard library only (and the stdlib-only SPICE wire constants).
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from concierge.transport.spice.wire import MAX_MESSAGE_SIZE

WIRE_VERSION = 1
#: room for the msgpack map, the type string, the body fields and the blob headers of one frame
FRAME_ENVELOPE = 64 * 1024
#: largest frame on the wire: one reassembled vdagent message plus its envelope
MAX_FRAME = MAX_MESSAGE_SIZE + FRAME_ENVELOPE
#: largest frame a connection may send before the gateway has welcomed it
HANDSHAKE_FRAME = FRAME_ENVELOPE
SOCKET_NAME = "session.sock"


class Hello(TypedDict):
    """First frame of an agent; informational only (identity comes from the kernel)."""

    version: int
    display: str
    uid: NotRequired[int]  # ignored on purpose: a body cannot prove who sent it


class MonitorGeometry(TypedDict):
    """One display in desktop coordinates; ``display_id`` is the SPICE display id."""

    x: int
    y: int
    width: int
    height: int
    display_id: int


class GeometryBody(TypedDict):
    """The session's current layout."""

    monitors: list[MonitorGeometry]


class Welcome(TypedDict):
    """What the gateway established about the agent."""

    uid: int
    pid: int
    session_id: str
    session_class: str
    active: bool
    file_xfer: bool


class AgentInfo(TypedDict):
    """One connected agent in ``session.status``."""

    uid: int
    pid: int
    session_id: str
    session_class: str
    locked: bool
    active: bool
    monitors: list[MonitorGeometry]


class StatusBody(TypedDict):
    """What ``session.status`` answers."""

    endpoints: list[int]
    agents: list[AgentInfo]
    active_session: str
    logind: bool
    rejected: int  # connections refused or closed for a protocol or policy violation
    connections: int  # open agent connections, welcomed or not

"""Public API of the input actor (config id ``input``, runs as root).

* ``input.mouse`` (cast, lane ``input``, ttl 50 ms; sender: the transport actor's SPICE
  front-end): ``MouseBody``, the VDAgentMouseState as received, coordinates relative to
  ``display_id``. No reply. Stale casts are dropped by the runtime, never replayed.
* ``input.geometry`` (cast; sender: the session gateway, whenever the active session reports
  its layout or the active session changes): ``GeometryBody``. An empty list means "no active
  session": every mouse state is then dropped (as spice-vdagentd does without an agent).
* at start the input actor requests ``session.geometry`` from the gateway (timeout 2 s; the
  reply is a ``GeometryBody``) so a restarted input actor maps the mouse at once.
* ``input.status`` (request, answered at once on the bridge thread, timeout 1 s): returns
  ``StatusBody``.

* Lending the sink (see ``lending.py`` and ``concierge.transport.spice.tablet``), all on the
  lanes, between this actor and ``settings.lend_to``: ``spice.mouse_offer {gen, monitors:
  [[display_id, x, y, width, height], ...]}`` + fds (sink, life pipe) / ``{gen}`` alone to take
  it back; ``input.mouse_taken {gen}``; ``spice.mouse_go {gen, x, y, buttons}``;
  ``input.tablet_state {gen, state: [x, y, buttons] | null}``.

Standard library only.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class MouseBody(TypedDict):
    """VDAgentMouseState: ``buttons`` holds VD_AGENT_{L,M,R,U,D,S,E}BUTTON_MASK bits."""

    x: int
    y: int
    buttons: int
    display_id: int


class Monitor(TypedDict):
    """One display of the session; ``display_id`` defaults to the list index."""

    x: int
    y: int
    width: int
    height: int
    display_id: NotRequired[int]


class GeometryBody(TypedDict):
    """The active session's displays in desktop coordinates."""

    monitors: list[Monitor]


class StatusBody(TypedDict):
    """What ``input.status`` answers."""

    sink: str
    width: int
    height: int
    monitors: list[Monitor]
    pending: int
    writer: str

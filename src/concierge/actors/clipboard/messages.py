"""Public message API of the ``clipboard`` actor (runs as the user in the graphical session).

Casts it accepts from the session gateway (bodies = vd_agent.h structs in snake_case;
``selection`` is 0 CLIPBOARD / 1 PRIMARY and defaults to 0 when the client lacks
CLIPBOARD_SELECTION; ``serial`` is present when the client has CLIPBOARD_GRAB_SERIAL):

- ``spice.clipboard_grab`` :class:`Grab`: the client owns the selection; guest apps see the
  mapped targets at once, nothing is transferred until a paste.
- ``spice.clipboard_request`` :class:`Request`: the client pastes guest data; answered with a
  ``clipboard`` message (type NONE and no data when the guest has nothing or it exceeds
  MAX_CLIPBOARD).
- ``spice.clipboard`` :class:`Data`: data for a guest app's paste. Bytes in ``data`` or, for
  large payloads, the envelope's ``blobs`` (concatenated in order).
- ``spice.clipboard_release`` :class:`Release`.
- ``spice.max_clipboard`` ``{"max": int}`` (-1 unlimited).
- ``spice.announce_capabilities`` ``{"request": int, "caps": [u32]}``: the client's caps; a
  ``request=1`` (new client) resets grab serials and re-announces guest-owned selections.
- ``spice.client_disconnected`` / ``session.deactivated`` / ``clipboard.release_all``:
  client-owned selections are dropped in the guest, serials reset.

Sent with ``ctx.cast("session", "spice.send", {"type": T, "body": B}, blobs=...)``:
``clipboard_grab`` {selection, serial, types}, ``clipboard_request`` {selection, type},
``clipboard`` {selection, type} + blobs (the data, split in ``blob_chunk`` frames),
``clipboard_release`` {selection}. Standard library only.
"""

from __future__ import annotations

from typing import TypedDict


class Grab(TypedDict, total=False):
    """CLIPBOARD_GRAB: ``types`` are VD_AGENT_CLIPBOARD_* numbers."""

    selection: int
    serial: int
    types: list[int]


class Request(TypedDict, total=False):
    """CLIPBOARD_REQUEST."""

    selection: int
    type: int


class Data(TypedDict, total=False):
    """CLIPBOARD (data may instead travel in blobs)."""

    selection: int
    type: int
    data: bytes


class Release(TypedDict, total=False):
    """CLIPBOARD_RELEASE."""

    selection: int

"""Public message API of the ``filexfer`` actor (runs as the user in the graphical session).

Casts it accepts (sender: the session gateway, decoded from the SPICE client port; no reply,
the answer is a FILE_XFER_STATUS sent back through ``session``):

- ``spice.file_xfer_start`` :class:`XferStart`. The gateway adds ``session_locked`` / ``greeter``.
- ``spice.file_xfer_data`` :class:`XferData`; the bytes are ``data`` or, for large chunks, the
  concatenated ``blobs`` of the envelope.
- ``spice.file_xfer_status`` :class:`XferStatus` from the client (CANCELLED/ERROR cancels).
- ``spice.client_disconnected`` (any body): every transfer is cancelled, partial files removed.
- ``spice.announce_capabilities`` ``{"request": int, "caps": [u32, ...]}``: the client's caps
  (FILE_XFER_DETAILED_ERRORS decides whether STATUS carries detail).

Sent: ``ctx.cast("session", "spice.send", {"type": "file_xfer_status", "body": XferStatus})``
with ``data`` = the detail bytes (``<BI`` GIO error, ``<Q`` free bytes) when the client has
FILE_XFER_DETAILED_ERRORS. Standard library and msgspec only.
"""

from __future__ import annotations

from typing import TypedDict


class XferStart(TypedDict, total=False):
    """FILE_XFER_START: ``data`` is the NUL-terminated GKeyFile text (or ``name``/``size``)."""

    id: int
    data: bytes | str
    name: str
    size: int
    session_locked: bool
    greeter: bool


class XferData(TypedDict, total=False):
    """FILE_XFER_DATA: ``size`` must equal the number of bytes carried."""

    id: int
    size: int
    data: bytes


class XferStatus(TypedDict, total=False):
    """FILE_XFER_STATUS both ways: ``result`` is a :class:`concierge.actors.vdagent.XferResult`."""

    id: int
    result: int
    data: bytes

"""Typed, bounded validation of every frame a session process sends to the root gateway.

A session process runs as an ordinary user, so its frames are hostile input to a root process.
Each agent -> gateway type has a strict schema here (wrong types, missing or unknown fields,
out-of-range integers are all refused); a ``spice.send`` body is checked against the vdagent
message it will become, with the integer widths of the wire, so the transport never encodes
something that cannot fit. Callers get a clean dict or :class:`BadFrameError`, never another
exception. msgspec only.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta

U8 = Annotated[int, Meta(ge=0, le=0xFF)]
U32 = Annotated[int, Meta(ge=0, le=0xFFFF_FFFF)]
I32 = Annotated[int, Meta(ge=-(2**31), le=2**31 - 1)]
#: SPICE displays a session can report (the monitors-config limit of the SPICE codec is 256)
MAX_MONITORS = 64
#: clipboard types in one grab (VD_AGENT_CLIPBOARD_* has a handful; generous)
MAX_GRAB_TYPES = 64
#: detail bytes of a file-transfer status (a GError domain/code pair is 5)
MAX_STATUS_DETAIL = 4096

_T = TypeVar("_T")


class BadFrameError(ValueError):
    """The frame does not match its schema (the message says which field)."""


class _Strict(msgspec.Struct, forbid_unknown_fields=True):
    """No unknown fields: a field we ignore today could be trusted by mistake tomorrow."""


class HelloFrame(_Strict):
    """``hello``: informational; ``uid`` is accepted and ignored (identity is SO_PEERCRED)."""

    version: U32
    display: Annotated[str, Meta(max_length=256)]
    uid: I32 | None = None


class MonitorFrame(_Strict):
    """One display of a ``geometry`` frame, desktop coordinates."""

    x: I32
    y: I32
    width: U32
    height: U32
    display_id: U32


class GeometryFrame(_Strict):
    """``geometry``: the session's layout."""

    monitors: Annotated[list[MonitorFrame], Meta(max_length=MAX_MONITORS)]


class _Reply(_Strict):
    type: U32
    error: U32


class _Clipboard(_Strict):
    type: U32
    selection: U8 = 0


class _ClipboardGrab(_Strict):
    types: Annotated[list[U32], Meta(max_length=MAX_GRAB_TYPES)]
    selection: U8 = 0
    serial: U32 = 0


class _ClipboardRequest(_Strict):
    type: U32
    selection: U8 = 0


class _ClipboardRelease(_Strict):
    selection: U8 = 0


class _FileXferStatus(_Strict):
    id: U32
    result: U32
    data: Annotated[bytes, Meta(max_length=MAX_STATUS_DETAIL)] = b""


#: the guest -> client vdagent messages a session may send, and their bodies
SEND_BODIES: dict[str, type[_Strict]] = {
    "reply": _Reply,
    "clipboard": _Clipboard,
    "clipboard_grab": _ClipboardGrab,
    "clipboard_request": _ClipboardRequest,
    "clipboard_release": _ClipboardRelease,
    "file_xfer_status": _FileXferStatus,
}


def _convert(body: Any, cls: type[_T], what: str) -> _T:
    try:
        return msgspec.convert(body, cls, strict=True)
    except msgspec.ValidationError as err:
        raise BadFrameError(f"{what}: {err}") from None


def hello(body: Any) -> HelloFrame:
    """A validated ``hello`` body."""
    return _convert(body, HelloFrame, "hello")


def geometry(body: Any) -> list[dict[str, int]]:
    """The monitors of a validated ``geometry`` body, as plain dicts."""
    return [msgspec.structs.asdict(m) for m in _convert(body, GeometryFrame, "geometry").monitors]


def spice_send(body: Any) -> tuple[str, dict[str, Any]]:
    """``(type, body)`` of a validated ``spice.send``; the body is rebuilt from its schema."""
    if not isinstance(body, dict) or set(body) != {"type", "body"}:
        raise BadFrameError("spice.send: expected exactly the fields 'type' and 'body'")
    kind = body["type"]
    cls = SEND_BODIES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise BadFrameError(f"spice.send: type {kind!r} may not be sent by a session")
    return kind, msgspec.structs.asdict(_convert(body["body"], cls, f"spice.send {kind}"))

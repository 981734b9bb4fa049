"""Payload codec for every vdagent message type, following the peer's capability-dependent layout.

``decode`` turns a payload into ``(body, blob)`` (the typed dicts of ``messages.py``; ``blob`` is
the bulk data of CLIPBOARD / FILE_XFER_DATA) and ``encode`` does the reverse. Sizes are checked
strictly (the lessons of spice.md 2.7/2.11: trust no length field). Standard library only.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from concierge.errors import ProtocolError
from concierge.transport.spice.wire import MOUSE_STATE_STRUCT as _MOUSE
from concierge.transport.spice.wire import Cap, MsgType

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")

_MON = struct.Struct("<IIIii")
_MM = struct.Struct("<HH")
_TWO_U32 = struct.Struct("<II")
_SEL = struct.Struct("<B3x")
_XFER_DATA = struct.Struct("<IQ")
_VOLUME = struct.Struct("<BBB")
_DEV_INFO = struct.Struct("<IIII")
FLAG_USE_POS = 1
FLAG_PHYSICAL_SIZE = 2
MAX_MONITORS = 256
MAX_DISPLAY_INFOS = 256

Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Layout:
    """The capability-dependent parts of the layout, from the client's announced caps."""

    selection: bool = False  # CLIPBOARD_SELECTION: 4-byte selection prefix
    grab_serial: bool = False  # CLIPBOARD_GRAB_SERIAL: u32 serial in GRAB

    @classmethod
    def from_caps(cls, caps: frozenset[int]) -> Layout:
        """The layout both sides use once ``caps`` (the client's) are known; we have both caps."""
        return cls(Cap.CLIPBOARD_SELECTION in caps, Cap.CLIPBOARD_GRAB_SERIAL in caps)


def _need(payload: bytes, size: int, what: str, *, exact: bool = True) -> None:
    if len(payload) < size or (exact and len(payload) != size):
        cmp = "" if exact else "at least "
        raise ProtocolError(f"{what}: payload is {len(payload)} bytes, expected {cmp}{size}")


def _sel(payload: bytes, layout: Layout, what: str) -> tuple[int, int]:
    """Return (selection, offset of the rest)."""
    if not layout.selection:
        return 0, 0
    _need(payload, 4, what, exact=False)
    return payload[0], 4


def _dec_mouse(p: bytes, _: Layout) -> tuple[Body, bytes | None]:
    _need(p, _MOUSE.size, "MOUSE_STATE")
    x, y, buttons, display_id = _MOUSE.unpack(p)
    return {"x": x, "y": y, "buttons": buttons, "display_id": display_id}, None


def _dec_monitors(p: bytes, _: Layout) -> tuple[Body, bytes | None]:
    _need(p, 8, "MONITORS_CONFIG", exact=False)
    n, flags = _TWO_U32.unpack_from(p, 0)
    if n > MAX_MONITORS:
        raise ProtocolError(f"MONITORS_CONFIG: {n} monitors is too many")
    tail = bool(flags & FLAG_PHYSICAL_SIZE)
    # spice-gtk >= 0.39 appends the physical sizes; 0.22.1 wrongly demanded 8 + 20n exactly.
    _need(p, 8 + _MON.size * n + (_MM.size * n if tail else 0), "MONITORS_CONFIG")
    monitors = []
    for i in range(n):
        h, w, depth, x, y = _MON.unpack_from(p, 8 + _MON.size * i)
        monitors.append({"height": h, "width": w, "depth": depth, "x": x, "y": y})
    body: Body = {"num_of_monitors": n, "flags": flags, "monitors": monitors}
    if tail:
        off = 8 + _MON.size * n
        body["physical_sizes"] = [
            dict(zip(("height", "width"), _MM.unpack_from(p, off + _MM.size * i), strict=True)) for i in range(n)
        ]
    return body, None


Decoder = Callable[[bytes, Layout], tuple[Body, bytes | None]]


def _dec_two(names: tuple[str, str], what: str) -> Decoder:
    def dec(p: bytes, _: Layout) -> tuple[Body, bytes | None]:
        _need(p, 8, what)
        a, b = _TWO_U32.unpack(p)
        return {names[0]: a, names[1]: b}, None

    return dec


def _dec_clipboard(p: bytes, layout: Layout) -> tuple[Body, bytes | None]:
    sel, off = _sel(p, layout, "CLIPBOARD")
    _need(p, off + 4, "CLIPBOARD", exact=False)
    return {"selection": sel, "type": _U32.unpack_from(p, off)[0]}, p[off + 4 :]


def _dec_announce(p: bytes, _: Layout) -> tuple[Body, bytes | None]:
    _need(p, 4, "ANNOUNCE_CAPABILITIES", exact=False)
    if len(p) % 4:
        raise ProtocolError(f"ANNOUNCE_CAPABILITIES: {len(p)} bytes is not a multiple of 4")
    words = list(struct.unpack_from(f"<{len(p) // 4}I", p))
    return {"request": words[0], "caps": words[1:]}, None


def _dec_grab(p: bytes, layout: Layout) -> tuple[Body, bytes | None]:
    sel, off = _sel(p, layout, "CLIPBOARD_GRAB")
    serial = 0
    if layout.grab_serial:
        _need(p, off + 4, "CLIPBOARD_GRAB", exact=False)
        serial = _U32.unpack_from(p, off)[0]
        off += 4
    if (len(p) - off) % 4:
        raise ProtocolError("CLIPBOARD_GRAB: types are not whole u32s")
    types = list(struct.unpack_from(f"<{(len(p) - off) // 4}I", p, off))
    return {"selection": sel, "serial": serial, "types": types}, None


def _dec_request(p: bytes, layout: Layout) -> tuple[Body, bytes | None]:
    sel, off = _sel(p, layout, "CLIPBOARD_REQUEST")
    _need(p, off + 4, "CLIPBOARD_REQUEST")
    return {"selection": sel, "type": _U32.unpack_from(p, off)[0]}, None


def _dec_release(p: bytes, layout: Layout) -> tuple[Body, bytes | None]:
    if layout.selection:
        # spice-vdagentd 0.22.1 sends a 1-byte RELEASE on agent loss; accept 1..4 bytes.
        if not 1 <= len(p) <= 4:
            raise ProtocolError(f"CLIPBOARD_RELEASE: {len(p)} bytes")
        return {"selection": p[0]}, None
    return {"selection": 0}, None


def _dec_xfer_start(p: bytes, _: Layout) -> tuple[Body, bytes | None]:
    _need(p, 4, "FILE_XFER_START", exact=False)
    text = p[4:].split(b"\0", 1)[0]
    try:
        return {"id": _U32.unpack_from(p)[0], "data": text.decode("utf-8")}, None
    except UnicodeDecodeError as err:
        raise ProtocolError("FILE_XFER_START: keyfile is not UTF-8") from err


def _dec_xfer_status(p: bytes, _: Layout) -> tuple[Body, bytes | None]:
    _need(p, 8, "FILE_XFER_STATUS", exact=False)
    xid, result = _TWO_U32.unpack_from(p)
    return {"id": xid, "result": result, "data": bytes(p[8:])}, None


def _dec_xfer_data(p: bytes, _: Layout) -> tuple[Body, bytes | None]:
    _need(p, 12, "FILE_XFER_DATA", exact=False)
    xid, size = _XFER_DATA.unpack_from(p)
    _need(p, 12 + size, "FILE_XFER_DATA")  # size must match the message (CVE-class lesson)
    return {"id": xid, "size": size}, p[12:]


def _dec_empty(p: bytes, _: Layout) -> tuple[Body, bytes | None]:
    _need(p, 0, "CLIENT_DISCONNECTED")
    return {}, None


def _dec_max_clipboard(p: bytes, _: Layout) -> tuple[Body, bytes | None]:
    _need(p, 4, "MAX_CLIPBOARD")
    return {"max": _I32.unpack(p)[0]}, None


def _dec_volume(p: bytes, _: Layout) -> tuple[Body, bytes | None]:
    _need(p, 3, "AUDIO_VOLUME_SYNC", exact=False)
    playback, mute, n = _VOLUME.unpack_from(p)
    _need(p, 3 + 2 * n, "AUDIO_VOLUME_SYNC")
    volume = list(struct.unpack_from(f"<{n}H", p, 3))
    return {"is_playback": playback, "mute": mute, "nchannels": n, "volume": volume}, None


def _dec_device_info(p: bytes, _: Layout) -> tuple[Body, bytes | None]:
    _need(p, 4, "GRAPHICS_DEVICE_INFO", exact=False)
    count = _U32.unpack_from(p)[0]
    if count > MAX_DISPLAY_INFOS:
        raise ProtocolError(f"GRAPHICS_DEVICE_INFO: {count} entries is too many")
    off, infos = 4, []
    for _i in range(count):
        _need(p, off + _DEV_INFO.size, "GRAPHICS_DEVICE_INFO", exact=False)
        channel, monitor, device_display, alen = _DEV_INFO.unpack_from(p, off)
        off += _DEV_INFO.size
        _need(p, off + alen, "GRAPHICS_DEVICE_INFO", exact=False)
        address = p[off : off + alen].split(b"\0", 1)[0].decode("utf-8", "replace")
        off += alen
        infos.append(
            {
                "channel_id": channel,
                "monitor_id": monitor,
                "device_display_id": device_display,
                "device_address_len": alen,
                "device_address": address,
            }
        )
    if off != len(p):
        raise ProtocolError(f"GRAPHICS_DEVICE_INFO: {len(p) - off} trailing bytes")
    return {"count": count, "display_info": infos}, None


_DECODERS: dict[MsgType, Decoder] = {
    MsgType.MOUSE_STATE: _dec_mouse,
    MsgType.MONITORS_CONFIG: _dec_monitors,
    MsgType.REPLY: _dec_two(("type", "error"), "REPLY"),
    MsgType.CLIPBOARD: _dec_clipboard,
    MsgType.DISPLAY_CONFIG: _dec_two(("flags", "depth"), "DISPLAY_CONFIG"),
    MsgType.ANNOUNCE_CAPABILITIES: _dec_announce,
    MsgType.CLIPBOARD_GRAB: _dec_grab,
    MsgType.CLIPBOARD_REQUEST: _dec_request,
    MsgType.CLIPBOARD_RELEASE: _dec_release,
    MsgType.FILE_XFER_START: _dec_xfer_start,
    MsgType.FILE_XFER_STATUS: _dec_xfer_status,
    MsgType.FILE_XFER_DATA: _dec_xfer_data,
    MsgType.CLIENT_DISCONNECTED: _dec_empty,
    MsgType.MAX_CLIPBOARD: _dec_max_clipboard,
    MsgType.AUDIO_VOLUME_SYNC: _dec_volume,
    MsgType.GRAPHICS_DEVICE_INFO: _dec_device_info,
}


def decode(mtype: int, payload: bytes, layout: Layout) -> tuple[MsgType, Body, bytes | None]:
    """Decode one payload; raises :class:`ProtocolError` for unknown types or bad sizes."""
    try:
        kind = MsgType(mtype)
    except ValueError as err:
        raise ProtocolError(f"unknown vdagent message type {mtype}") from err
    body, blob = _DECODERS[kind](payload, layout)
    return kind, body, blob


def encode(kind: MsgType, body: Body, layout: Layout, blob: bytes = b"") -> bytes:
    """Encode one payload from a typed body (``blob`` = CLIPBOARD / FILE_XFER_DATA data)."""
    try:
        return _encode(kind, body, layout, blob)
    except (KeyError, TypeError, struct.error) as err:
        raise ProtocolError(f"cannot encode {kind.name}: {err}") from err


def _sel_prefix(body: Body, layout: Layout) -> bytes:
    return _SEL.pack(body.get("selection", 0)) if layout.selection else b""


def _encode(kind: MsgType, b: Body, layout: Layout, blob: bytes) -> bytes:
    match kind:
        case MsgType.MOUSE_STATE:
            return _MOUSE.pack(b["x"], b["y"], b["buttons"], b["display_id"])
        case MsgType.MONITORS_CONFIG:
            mons = b["monitors"]
            out = _TWO_U32.pack(len(mons), b.get("flags", 0))
            out += b"".join(_MON.pack(m["height"], m["width"], m["depth"], m["x"], m["y"]) for m in mons)
            if b.get("flags", 0) & FLAG_PHYSICAL_SIZE:
                out += b"".join(_MM.pack(m["height"], m["width"]) for m in b["physical_sizes"])
            return out
        case MsgType.REPLY:
            return _TWO_U32.pack(b["type"], b["error"])
        case MsgType.CLIPBOARD:
            return _sel_prefix(b, layout) + _U32.pack(b["type"]) + blob
        case MsgType.DISPLAY_CONFIG:
            return _TWO_U32.pack(b["flags"], b["depth"])
        case MsgType.ANNOUNCE_CAPABILITIES:
            return struct.pack(f"<{1 + len(b['caps'])}I", b["request"], *b["caps"])
        case MsgType.CLIPBOARD_GRAB:
            serial = _U32.pack(b.get("serial", 0)) if layout.grab_serial else b""
            types = b["types"]
            return _sel_prefix(b, layout) + serial + struct.pack(f"<{len(types)}I", *types)
        case MsgType.CLIPBOARD_REQUEST:
            return _sel_prefix(b, layout) + _U32.pack(b["type"])
        case MsgType.CLIPBOARD_RELEASE:
            return _sel_prefix(b, layout)
        case MsgType.FILE_XFER_START:
            return _U32.pack(b["id"]) + str(b["data"]).encode("utf-8") + b"\0"
        case MsgType.FILE_XFER_STATUS:
            return _TWO_U32.pack(b["id"], b["result"]) + bytes(b.get("data", b""))
        case MsgType.FILE_XFER_DATA:
            return _XFER_DATA.pack(b["id"], len(blob)) + blob
        case MsgType.CLIENT_DISCONNECTED:
            return b""
        case MsgType.MAX_CLIPBOARD:
            return _I32.pack(b["max"])
        case MsgType.AUDIO_VOLUME_SYNC:
            vol = b["volume"]
            return _VOLUME.pack(b["is_playback"], b["mute"], len(vol)) + struct.pack(f"<{len(vol)}H", *vol)
        case MsgType.GRAPHICS_DEVICE_INFO:
            out = _U32.pack(len(b["display_info"]))
            for info in b["display_info"]:
                addr = info["device_address"].encode("utf-8") + b"\0"
                out += _DEV_INFO.pack(info["channel_id"], info["monitor_id"], info["device_display_id"], len(addr))
                out += addr
            return out
    raise ProtocolError(f"cannot encode {kind!r}")

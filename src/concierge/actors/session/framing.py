"""Length-prefixed msgpack frames for the gateway <-> session-process stream (see messages.py).

msgspec only; no sockets here, so both ends and the tests share one implementation.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import msgspec

from concierge.actors.session.messages import MAX_FRAME
from concierge.errors import ProtocolError

_LEN = struct.Struct(">I")
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


def encode(type_: str, body: Any = None, blobs: tuple[bytes, ...] = ()) -> bytes:
    """One frame: length + msgpack ``{"t", "b", "x"}``."""
    payload = _enc.encode({"t": type_, "b": body, "x": list(blobs)})
    return _LEN.pack(len(payload)) + payload


class FrameReader:
    """Accumulates stream bytes and yields ``(type, body, blobs)`` for every whole frame."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[str, Any, tuple[bytes, ...]]]:
        """Add bytes; raises ProtocolError on an oversized or undecodable frame."""
        self._buf += data
        while len(self._buf) >= 4:
            (size,) = _LEN.unpack_from(self._buf)
            if size > MAX_FRAME:
                raise ProtocolError(f"frame of {size} bytes exceeds {MAX_FRAME}")
            if len(self._buf) < 4 + size:
                return
            raw = bytes(self._buf[4 : 4 + size])
            del self._buf[: 4 + size]
            try:
                msg = _dec.decode(raw)
                type_, body, blobs = msg["t"], msg.get("b"), msg.get("x") or []
            except (msgspec.DecodeError, KeyError, TypeError, AttributeError) as err:
                raise ProtocolError(f"undecodable frame: {err}") from err
            if not isinstance(type_, str) or not isinstance(blobs, list):
                raise ProtocolError("frame has a bad type or blobs")
            if not all(isinstance(b, bytes) for b in blobs):
                raise ProtocolError("frame has a bad type or blobs")
            yield type_, body, tuple(blobs)

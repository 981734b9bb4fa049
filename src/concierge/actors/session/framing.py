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
    """Accumulates stream bytes and yields ``(type, body, blobs)`` for every whole frame.

    ``max_frame`` may be changed between frames (the gateway raises it after the welcome); it is
    checked against each frame's 4-byte header, so an oversized frame is refused before its body
    is buffered: at most one ``feed`` of bytes beyond the limit is ever held.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[tuple[str, Any, tuple[bytes, ...]]]:
        """Add bytes; raises ProtocolError (only) on an oversized, undecodable or too deep frame."""
        self._buf += data
        while len(self._buf) >= 4:
            (size,) = _LEN.unpack_from(self._buf)
            if size > self.max_frame:
                self._buf.clear()
                raise ProtocolError(f"frame of {size} bytes exceeds {self.max_frame}")
            if len(self._buf) < 4 + size:
                return
            try:
                with memoryview(self._buf) as view:
                    msg = _dec.decode(view[4 : 4 + size])
                type_, body, blobs = msg["t"], msg.get("b"), msg.get("x") or []
            except (msgspec.DecodeError, RecursionError, KeyError, TypeError, AttributeError, ValueError) as err:
                self._buf.clear()
                raise ProtocolError(f"undecodable frame: {err}") from err
            finally:
                if len(self._buf) >= 4 + size:
                    del self._buf[: 4 + size]
            if (
                not isinstance(type_, str)
                or not isinstance(blobs, list)
                or not all(isinstance(b, bytes) for b in blobs)
            ):
                raise ProtocolError("frame has a bad type or blobs")
            yield type_, body, tuple(blobs)

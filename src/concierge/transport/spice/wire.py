"""vdagent framing: chunk headers, message headers, per-port reassembly and outbound splitting.

Constants mirror ``spice/vd_agent.h`` (spice-protocol 0.14.3). Everything is little-endian and
packed. Standard library only; knows nothing about message bodies (see ``codec.py``).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from concierge.errors import ProtocolError

CHUNK_HEADER = struct.Struct("<II")  # VDIChunkHeader{u32 port; u32 size}
#: VDAgentMessage{u32 protocol; u32 type; u64 opaque; u32 size}
MESSAGE_HEADER = struct.Struct("<IIQI")
MOUSE_STATE_STRUCT = struct.Struct("<IIIB")  # VDAgentMouseState, 13 bytes
PROTOCOL = 1
MAX_DATA_SIZE = 2048  # VD_AGENT_MAX_DATA_SIZE: chunk body limit, header included in the first
CLIENT_PORT = 1  # VDP_CLIENT_PORT
SERVER_PORT = 2  # VDP_SERVER_PORT
#: refuse reassembled messages above this (clipboard limit of spice-gtk is 100 MiB)
MAX_MESSAGE_SIZE = 128 * 1024 * 1024


class MsgType(enum.IntEnum):
    """``VD_AGENT_*`` message types; the lower-case name is the concierge type suffix."""

    MOUSE_STATE = 1
    MONITORS_CONFIG = 2
    REPLY = 3
    CLIPBOARD = 4
    DISPLAY_CONFIG = 5
    ANNOUNCE_CAPABILITIES = 6
    CLIPBOARD_GRAB = 7
    CLIPBOARD_REQUEST = 8
    CLIPBOARD_RELEASE = 9
    FILE_XFER_START = 10
    FILE_XFER_STATUS = 11
    FILE_XFER_DATA = 12
    CLIENT_DISCONNECTED = 13
    MAX_CLIPBOARD = 14
    AUDIO_VOLUME_SYNC = 15
    GRAPHICS_DEVICE_INFO = 16

    @property
    def snake(self) -> str:
        """``monitors_config`` for MONITORS_CONFIG: the name used in concierge message types."""
        return self.name.lower()


BY_SNAKE = {t.snake: t for t in MsgType}


class Cap(enum.IntEnum):
    """``VD_AGENT_CAP_*`` capability bit numbers."""

    MOUSE_STATE = 0
    MONITORS_CONFIG = 1
    REPLY = 2
    CLIPBOARD = 3
    DISPLAY_CONFIG = 4
    CLIPBOARD_BY_DEMAND = 5
    CLIPBOARD_SELECTION = 6
    SPARSE_MONITORS_CONFIG = 7
    GUEST_LINEEND_LF = 8
    GUEST_LINEEND_CRLF = 9
    MAX_CLIPBOARD = 10
    AUDIO_VOLUME_SYNC = 11
    MONITORS_CONFIG_POSITION = 12
    FILE_XFER_DISABLED = 13
    FILE_XFER_DETAILED_ERRORS = 14
    GRAPHICS_DEVICE_INFO = 15
    CLIPBOARD_NO_RELEASE_ON_REGRAB = 16
    CLIPBOARD_GRAB_SERIAL = 17


#: what we announce: the stock Linux agent's set (spice.md 4.3), without AUDIO_VOLUME_SYNC
#: (not implemented) and without DISPLAY_CONFIG (Linux has no equivalent yet).
GUEST_CAPS = frozenset(
    {
        Cap.MOUSE_STATE,
        Cap.MONITORS_CONFIG,
        Cap.REPLY,
        Cap.CLIPBOARD_BY_DEMAND,
        Cap.CLIPBOARD_SELECTION,
        Cap.SPARSE_MONITORS_CONFIG,
        Cap.GUEST_LINEEND_LF,
        Cap.MAX_CLIPBOARD,
        Cap.GRAPHICS_DEVICE_INFO,
        Cap.CLIPBOARD_NO_RELEASE_ON_REGRAB,
        Cap.CLIPBOARD_GRAB_SERIAL,
    }
)


def caps_to_words(caps: frozenset[int] | set[int]) -> list[int]:
    """Pack capability bit numbers into the u32 words of ANNOUNCE_CAPABILITIES."""
    words = [0] * ((max(caps, default=0) // 32) + 1)
    for bit in caps:
        words[bit // 32] |= 1 << (bit % 32)
    return words


#: capability words read from an announce: every capability defined so far fits the first word,
#: and a host announcing megabytes of words must not cost a bit test for each (32 per word)
MAX_CAP_WORDS = 8


def words_to_caps(words: list[int]) -> frozenset[int]:
    """Unpack u32 capability words (VD_AGENT_HAS_CAPABILITY for every bit we could know)."""
    return frozenset(i * 32 + b for i, w in enumerate(words[:MAX_CAP_WORDS]) for b in range(32) if w >> b & 1)


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A reassembled message: the port it came on, its header fields and its payload."""

    port: int
    protocol: int
    type: int
    opaque: int
    payload: bytes


class _PortState:
    __slots__ = ("buf", "header", "want")

    def __init__(self) -> None:
        self.header: tuple[int, int, int, int] | None = None
        self.buf = bytearray()
        self.want = 0


class Reassembler:
    """Turns a byte stream of chunks into whole messages, with reassembly state per port.

    Raises :class:`ProtocolError` for an invalid port, an oversized inbound chunk (host chunks
    are at most 2048 bytes) or a chunk overrunning its message; the caller then calls
    :meth:`reset` (the stream cannot be trusted any more: drop what is buffered).
    """

    def __init__(self, *, max_chunk: int = MAX_DATA_SIZE) -> None:
        self.max_chunk = max_chunk
        self._buf = bytearray()
        self._ports: dict[int, _PortState] = {}

    def reset(self, port: int | None = None) -> None:
        """Forget everything (or one port's partial message, e.g. on CLIENT_DISCONNECTED)."""
        if port is None:
            self._buf.clear()
            self._ports.clear()
        else:
            self._ports.pop(port, None)

    def idle(self) -> bool:
        """No buffered bytes and no partial message on the server port (mouse fast path)."""
        return not self._buf and SERVER_PORT not in self._ports

    def feed(self, data: bytes) -> Iterator[RawMessage]:
        """Add bytes; yield every message completed by them."""
        self._buf += data
        buf = self._buf
        pos = 0
        try:
            while len(buf) - pos >= CHUNK_HEADER.size:
                port, size = CHUNK_HEADER.unpack_from(buf, pos)
                if port not in (CLIENT_PORT, SERVER_PORT):
                    raise ProtocolError(f"invalid vdagent port {port}")
                if size > self.max_chunk or size == 0:
                    raise ProtocolError(f"chunk size {size} out of range (max {self.max_chunk})")
                if len(buf) - pos < CHUNK_HEADER.size + size:
                    break
                start = pos + CHUNK_HEADER.size
                pos = start + size
                msg = self._chunk(port, bytes(buf[start:pos]))
                if msg is not None:
                    yield msg
        finally:
            del buf[:pos]

    def _chunk(self, port: int, body: bytes) -> RawMessage | None:
        state = self._ports.get(port)
        if state is None:
            state = self._ports[port] = _PortState()
        if state.header is None:
            if len(body) < MESSAGE_HEADER.size:
                raise ProtocolError(f"first chunk of {len(body)} bytes is shorter than a header")
            header = MESSAGE_HEADER.unpack_from(body, 0)
            if header[3] > MAX_MESSAGE_SIZE:
                raise ProtocolError(f"message of {header[3]} bytes exceeds the limit")
            state.header = header
            state.want = header[3]
            body = body[MESSAGE_HEADER.size :]
        if len(body) > state.want:
            raise ProtocolError("chunk overruns its message (lost sync)")
        state.buf += body
        state.want -= len(body)
        if state.want:
            return None
        protocol, mtype, opaque, _ = state.header
        payload = bytes(state.buf)
        del self._ports[port]
        return RawMessage(port, protocol, mtype, opaque, payload)


#: the fixed bytes of a single-chunk MOUSE_STATE: chunk header, protocol, type (opaque varies)
MOUSE_FRAME_PREFIX = CHUNK_HEADER.pack(SERVER_PORT, MESSAGE_HEADER.size + 13) + struct.pack("<II", PROTOCOL, 1)
MOUSE_FRAME_SIZE = CHUNK_HEADER.size + MESSAGE_HEADER.size + 13


def frame(port: int, mtype: int, payload: bytes, *, opaque: int = 0, max_chunk: int = MAX_DATA_SIZE) -> bytes:
    """Encode one message as consecutive chunks of at most ``max_chunk`` body bytes.

    Unlike spice-vdagentd 0.22.1 (one unbounded chunk), guest->host messages are split too.
    """
    message = MESSAGE_HEADER.pack(PROTOCOL, mtype, opaque, len(payload)) + payload
    if len(message) <= max_chunk:
        return CHUNK_HEADER.pack(port, len(message)) + message
    out = bytearray()
    view = memoryview(message)
    for off in range(0, len(message), max_chunk):
        piece = view[off : off + max_chunk]
        out += CHUNK_HEADER.pack(port, len(piece))
        out += piece
    return bytes(out)

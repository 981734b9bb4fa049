"""Fuzz target: vdagent chunk reassembly (``transport/spice/wire.py``), the payload codec
(``codec.py``) and the front-end that glues them (``frontend.py``).

* the ``Reassembler`` yields the same messages, then the same ``ProtocolError`` if any, whatever
  the chunking of the stream (it is a stream decoder with state per port);
* every reassembled payload decodes, under each clipboard layout, to a body or a
  ``ProtocolError``, and re-encoding a decoded body is stable (idempotent);
* the front-end swallows anything (its ``received`` must never raise on a bridge callback) and
  after a host reconnect serves a mouse event again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from fuzz_common import DesyncError, same_for_every_chunking, split_seed

from concierge.errors import ProtocolError
from concierge.transport.spice import codec
from concierge.transport.spice.codec import Layout
from concierge.transport.spice.frontend import SpiceFrontEnd
from concierge.transport.spice.wire import MOUSE_STATE_STRUCT, MsgType, RawMessage, Reassembler, frame

_LAYOUTS = (Layout(), Layout(selection=True), Layout(selection=True, grab_serial=True))
_MOUSE = frame(2, MsgType.MOUSE_STATE, MOUSE_STATE_STRUCT.pack(7, 8, 0, 0))


class _Ctx:
    """Just enough NodeContext for the front-end: records what it casts."""

    actor_id = "transport"
    settings: dict[str, Any] = {}

    def __init__(self) -> None:
        self.casts: list[tuple[str, str, Any]] = []

    def cast(self, dst: str, type: str, body: Any = None, **_: Any) -> None:
        self.casts.append((dst, type, body))

    def count(self, *_: Any) -> None:
        """Counters are not checked here."""

    def publish(self, *_: Any) -> None:
        """Events are not checked here."""


class _Link:
    name = "spice"
    connected = True

    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        self.out += data


def _reassembler() -> Callable[[bytes], Iterable[Any]]:
    return Reassembler().feed


def _decode_all(payload: bytes) -> list[RawMessage]:
    messages: list[RawMessage] = []
    with contextlib.suppress(ProtocolError):
        messages.extend(Reassembler().feed(payload))
    return messages


def _check_codec(msg: RawMessage) -> None:
    """Decoding may normalise (text after a NUL is dropped), but only once: encode(decode(.))
    must be idempotent, so what we relay is stable and means what the peer decodes."""
    for layout in _LAYOUTS:
        try:
            kind, body, blob = codec.decode(msg.type, msg.payload, layout)
        except ProtocolError:
            continue
        first = codec.encode(kind, body, layout, blob or b"")
        decoded = codec.decode(kind, first, layout)
        second = codec.encode(kind, decoded[1], layout, decoded[2] or b"")
        if second != first or repr(codec.decode(kind, second, layout)) != repr(decoded):
            raise DesyncError(f"{kind.name} is not stable under re-encoding with {layout}: {first!r} -> {second!r}")


def _check_frontend(rng_pieces: list[bytes]) -> None:
    ctx = _Ctx()
    fe = SpiceFrontEnd(ctx, _Link())  # type: ignore[arg-type]
    fe.connected()
    for piece in rng_pieces:
        fe.received(piece)
    fe.disconnected()
    fe.connected()
    fe.received(_MOUSE)
    if ctx.casts[-1] != ("input", "input.mouse", {"x": 7, "y": 8, "buttons": 0, "display_id": 0}):
        raise DesyncError(f"front-end does not serve the mouse after a reconnect: {ctx.casts[-1]!r}")


def one_input(data: bytes) -> None:
    """Check every property above on ``data`` (first two bytes choose the chunking)."""
    rng, payload = split_seed(data)
    same_for_every_chunking(_reassembler, rng, payload, (ProtocolError,))
    for msg in _decode_all(payload):
        _check_codec(msg)
    cut = rng.randint(0, len(payload))
    _check_frontend([payload[:cut], payload[cut:]])

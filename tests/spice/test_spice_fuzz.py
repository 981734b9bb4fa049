"""Hostile bytes never crash the codec or the front-end, and the channel resynchronises."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from concierge.errors import ProtocolError
from concierge.transport.spice import codec
from concierge.transport.spice.codec import Layout
from concierge.transport.spice.frontend import SpiceFrontEnd
from concierge.transport.spice.wire import MOUSE_STATE_STRUCT, MsgType, frame


class _Ctx:
    actor_id = "transport"
    settings: dict[str, Any] = {}

    def __init__(self) -> None:
        self.casts: list[tuple[str, str, Any]] = []

    def cast(self, dst: str, type: str, body: Any = None, **_: Any) -> None:
        self.casts.append((dst, type, body))

    def count(self, *_: Any) -> None:
        pass

    def publish(self, *_: Any) -> None:
        pass


class _Link:
    name = "spice"
    connected = True

    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        self.out += data


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(MsgType)),
    payload=st.binary(max_size=200),
    sel=st.booleans(),
    serial=st.booleans(),
)
def test_spice_decode_never_crashes(kind: MsgType, payload: bytes, sel: bool, serial: bool) -> None:
    layout = Layout(sel, serial)
    try:
        decoded = codec.decode(kind, payload, layout)
    except ProtocolError:
        return
    # whatever decodes re-encodes to a payload that decodes the same (no silent corruption)
    again = codec.encode(decoded[0], decoded[1], layout, decoded[2] or b"")
    assert codec.decode(kind, again, layout)[1:] == decoded[1:]


@settings(max_examples=200, deadline=None)
@given(garbage=st.lists(st.binary(min_size=1, max_size=64), max_size=5))
def test_spice_frontend_survives_garbage_and_resyncs(garbage: list[bytes]) -> None:
    ctx = _Ctx()
    fe = SpiceFrontEnd(ctx, _Link())  # type: ignore[arg-type]
    fe.connected()
    for chunk in garbage:
        fe.received(chunk)
    fe.disconnected()  # what the transport does when a host goes away: a clean slate
    fe.connected()
    fe.received(frame(2, MsgType.MOUSE_STATE, MOUSE_STATE_STRUCT.pack(7, 8, 0, 0)))
    assert ctx.casts[-1] == (
        "input",
        "input.mouse",
        {"x": 7, "y": 8, "buttons": 0, "display_id": 0},
    )

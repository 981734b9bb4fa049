"""The SPICE decoders' count and size limits (docs/security.md), each at the limit and past it."""

from __future__ import annotations

import struct

import pytest

from concierge.errors import ProtocolError
from concierge.transport.spice import codec
from concierge.transport.spice.codec import MAX_DISPLAY_INFOS, MAX_MONITORS, Layout
from concierge.transport.spice.wire import CHUNK_HEADER, MAX_MESSAGE_SIZE, MESSAGE_HEADER, MsgType, Reassembler


def _first_chunk(size: int) -> bytes:
    header = MESSAGE_HEADER.pack(1, MsgType.CLIPBOARD, 0, size)
    return CHUNK_HEADER.pack(1, len(header)) + header


def test_spice_message_size_is_refused_at_its_header_past_the_limit() -> None:
    reader = Reassembler()
    assert list(reader.feed(_first_chunk(MAX_MESSAGE_SIZE))) == []  # accepted, waiting for data
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        list(Reassembler().feed(_first_chunk(MAX_MESSAGE_SIZE + 1)))


@pytest.mark.parametrize(("count", "ok"), [(MAX_MONITORS, True), (MAX_MONITORS + 1, False)])
def test_spice_monitor_count_limit(count: int, ok: bool) -> None:
    payload = struct.pack("<II", count, 0) + bytes(20 * count)
    if ok:
        assert codec.decode(MsgType.MONITORS_CONFIG, payload, Layout())[1]["num_of_monitors"] == count
    else:
        with pytest.raises(ProtocolError, match="too many"):
            codec.decode(MsgType.MONITORS_CONFIG, payload, Layout())


def test_spice_display_info_count_limit() -> None:
    entry = struct.pack("<IIII", 0, 0, 0, 1) + b"\0"
    ok = struct.pack("<I", MAX_DISPLAY_INFOS) + entry * MAX_DISPLAY_INFOS
    assert codec.decode(MsgType.GRAPHICS_DEVICE_INFO, ok, Layout())[1]["count"] == MAX_DISPLAY_INFOS
    too_many = struct.pack("<I", MAX_DISPLAY_INFOS + 1) + entry * (MAX_DISPLAY_INFOS + 1)
    with pytest.raises(ProtocolError, match="too many"):
        codec.decode(MsgType.GRAPHICS_DEVICE_INFO, too_many, Layout())

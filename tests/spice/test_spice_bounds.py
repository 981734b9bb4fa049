"""The two inbound size bounds of the vdagent framing, each hit exactly at and just past its edge.

The limits are written here as literals (2,048 and 128 MiB), not read from the module, so a
changed constant fails these tests as surely as a removed check does; every refusal names its
cause with ``match=`` so another error (a lost-sync overrun, say) cannot stand in for it.
"""

from __future__ import annotations

import dataclasses
import struct

import pytest

from concierge.errors import ProtocolError
from concierge.transport.spice.wire import (
    MOUSE_FRAME_PREFIX,
    MOUSE_FRAME_SIZE,
    MsgType,
    Reassembler,
    frame,
)

CHUNK_LIMIT = 2048  # VD_AGENT_MAX_DATA_SIZE in spice-protocol's vd_agent.h
MESSAGE_LIMIT = 128 * 1024 * 1024
CLIENT_PORT = 1


def _chunk(size: int, body: bytes = b"") -> bytes:
    return struct.pack("<II", CLIENT_PORT, size) + body


def _message_header(size: int, mtype: int = MsgType.CLIPBOARD) -> bytes:
    return struct.pack("<IIQI", 1, mtype, 0, size)


def test_spice_chunk_of_2048_bytes_is_accepted() -> None:
    payload = b"\x01\x00\x00\x00" + b"x" * (CHUNK_LIMIT - 20 - 4)
    msgs = list(Reassembler().feed(_chunk(CHUNK_LIMIT, _message_header(len(payload)) + payload)))
    assert [(m.type, len(m.payload)) for m in msgs] == [(MsgType.CLIPBOARD, CHUNK_LIMIT - 20)]


def test_spice_chunk_of_2049_bytes_is_refused_from_its_header_alone() -> None:
    # the refusal must come before the body arrives: nothing else could complain yet
    with pytest.raises(ProtocolError, match=r"^chunk size 2049 out of range \(max 2048\)$"):
        list(Reassembler().feed(_chunk(CHUNK_LIMIT + 1)))


def test_spice_huge_chunk_header_is_refused_at_once() -> None:
    with pytest.raises(ProtocolError, match=r"^chunk size 4294967295 out of range"):
        list(Reassembler().feed(_chunk(0xFFFFFFFF)))


def test_spice_empty_chunk_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"^chunk size 0 out of range"):
        list(Reassembler().feed(_chunk(0)))


def test_spice_message_of_128_mib_is_accepted_and_awaits_its_body() -> None:
    rx = Reassembler()
    assert list(rx.feed(_chunk(20, _message_header(MESSAGE_LIMIT)))) == []
    more = list(rx.feed(_chunk(CHUNK_LIMIT, b"y" * CHUNK_LIMIT)))
    assert more == []  # still waiting: 128 MiB were announced


def test_spice_message_one_byte_over_128_mib_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"^message of 134217729 bytes exceeds the limit$"):
        list(Reassembler().feed(_chunk(20, _message_header(MESSAGE_LIMIT + 1))))


def test_spice_message_of_4_gib_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"^message of 4294967295 bytes exceeds the limit$"):
        list(Reassembler().feed(_chunk(20, _message_header(0xFFFFFFFF))))


def test_spice_bound_refusals_keep_working_after_a_good_message() -> None:
    rx = Reassembler()
    payload = b"\x01\x00\x00\x00abc"
    assert len(list(rx.feed(_chunk(20 + len(payload), _message_header(len(payload)) + payload)))) == 1
    with pytest.raises(ProtocolError, match=r"^chunk size 2049 out of range"):
        list(rx.feed(_chunk(CHUNK_LIMIT + 1)))


def test_spice_mouse_fast_path_constants_match_a_real_frame() -> None:
    """The front-end's mouse fast path matches raw bytes against these; they must be exact."""
    payload = struct.pack("<IIIB", 100, 200, 1, 0)
    wire = frame(2, MsgType.MOUSE_STATE, payload, opaque=0)
    assert len(wire) == MOUSE_FRAME_SIZE == 8 + 20 + 13
    assert wire.startswith(MOUSE_FRAME_PREFIX)
    assert struct.pack("<IIII", 2, 33, 1, 1) == MOUSE_FRAME_PREFIX


def test_spice_a_complete_and_a_partial_chunk_in_one_read() -> None:
    """The second chunk of a read must wait for its bytes even though the first was consumed."""
    first = b"\x01\x00\x00\x00" + b"a" * 8
    second = b"\x01\x00\x00\x00" + b"b" * 40
    data = _chunk(20 + len(first), _message_header(len(first)) + first)
    data += _chunk(20 + len(second), _message_header(len(second)) + second)
    split = len(data) - 10
    rx = Reassembler()
    assert [m.payload for m in rx.feed(data[:split])] == [first]
    assert [m.payload for m in rx.feed(data[split:])] == [second]


def test_spice_messages_are_immutable() -> None:
    """Messages cross threads (reader -> actors): nobody may change one after it is yielded."""
    payload = b"\x01\x00\x00\x00abc"
    (msg,) = Reassembler().feed(_chunk(20 + len(payload), _message_header(len(payload)) + payload))
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field"):
        msg.type = 99  # type: ignore[misc]

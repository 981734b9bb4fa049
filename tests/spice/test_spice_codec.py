"""Golden frames for every vdagent message type, capability-dependent layouts, chunking."""

from __future__ import annotations

import re

import pytest

from concierge.errors import ProtocolError
from concierge.transport.spice import codec
from concierge.transport.spice.codec import Layout
from concierge.transport.spice.wire import (
    GUEST_CAPS,
    MsgType,
    Reassembler,
    caps_to_words,
    frame,
    words_to_caps,
)

SEL = Layout(selection=True, grab_serial=True)
PLAIN = Layout()
KEYFILE = "[vdagent-file-xfer]\nname=a.txt\nsize=3\n"

# (kind, layout, body, blob, payload as written by hand from vd_agent.h)
GOLDEN = [
    (
        MsgType.MOUSE_STATE,
        PLAIN,
        {"x": 10, "y": 20, "buttons": 2, "display_id": 1},
        None,
        "0a000000 14000000 02000000 01",
    ),
    (
        MsgType.MONITORS_CONFIG,
        PLAIN,
        {
            "num_of_monitors": 2,
            "flags": 1,
            "monitors": [
                {"height": 800, "width": 1280, "depth": 32, "x": 0, "y": 0},
                {"height": 768, "width": 1024, "depth": 32, "x": 1280, "y": 0},
            ],
        },
        None,
        "02000000 01000000 20030000 00050000 20000000 00000000 00000000 00030000 00040000 20000000 00050000 00000000",
    ),
    (
        MsgType.MONITORS_CONFIG,
        PLAIN,
        {
            "num_of_monitors": 1,
            "flags": 3,
            "monitors": [{"height": 800, "width": 1280, "depth": 32, "x": 0, "y": 0}],
            "physical_sizes": [{"height": 300, "width": 500}],
        },
        None,
        "01000000 03000000 20030000 00050000 20000000 00000000 00000000 2c01 f401",
    ),
    (MsgType.REPLY, PLAIN, {"type": 2, "error": 1}, None, "02000000 01000000"),
    (MsgType.CLIPBOARD, SEL, {"selection": 1, "type": 1}, b"hi", "01000000 01000000 6869"),
    (MsgType.CLIPBOARD, PLAIN, {"selection": 0, "type": 1}, b"hi", "01000000 6869"),
    (MsgType.DISPLAY_CONFIG, PLAIN, {"flags": 5, "depth": 32}, None, "05000000 20000000"),
    (
        MsgType.ANNOUNCE_CAPABILITIES,
        PLAIN,
        {"request": 1, "caps": [0x385E7]},
        None,
        "01000000 e7850300",
    ),
    (
        MsgType.CLIPBOARD_GRAB,
        SEL,
        {"selection": 0, "serial": 5, "types": [1, 2]},
        None,
        "00000000 05000000 01000000 02000000",
    ),
    (MsgType.CLIPBOARD_GRAB, PLAIN, {"selection": 0, "serial": 0, "types": [1]}, None, "01000000"),
    (MsgType.CLIPBOARD_REQUEST, SEL, {"selection": 1, "type": 1}, None, "01000000 01000000"),
    (MsgType.CLIPBOARD_REQUEST, PLAIN, {"selection": 0, "type": 2}, None, "02000000"),
    (MsgType.CLIPBOARD_RELEASE, SEL, {"selection": 1}, None, "01000000"),
    (MsgType.CLIPBOARD_RELEASE, PLAIN, {"selection": 0}, None, ""),
    (
        MsgType.FILE_XFER_START,
        PLAIN,
        {"id": 7, "data": KEYFILE},
        None,
        "07000000 " + KEYFILE.encode().hex() + "00",
    ),
    (
        MsgType.FILE_XFER_STATUS,
        PLAIN,
        {"id": 7, "result": 4, "data": bytes.fromhex("e803000000000000")},
        None,
        "07000000 04000000 e803000000000000",
    ),
    (
        MsgType.FILE_XFER_DATA,
        PLAIN,
        {"id": 7, "size": 3},
        b"abc",
        "07000000 0300000000000000 616263",
    ),
    (MsgType.CLIENT_DISCONNECTED, PLAIN, {}, None, ""),
    (MsgType.MAX_CLIPBOARD, PLAIN, {"max": -1}, None, "ffffffff"),
    (
        MsgType.AUDIO_VOLUME_SYNC,
        PLAIN,
        {"is_playback": 1, "mute": 0, "nchannels": 2, "volume": [0x1234, 0xFFFF]},
        None,
        "01 00 02 3412 ffff",
    ),
    (
        MsgType.GRAPHICS_DEVICE_INFO,
        PLAIN,
        {
            "count": 1,
            "display_info": [
                {
                    "channel_id": 0,
                    "monitor_id": 1,
                    "device_display_id": 1,
                    "device_address_len": 14,
                    "device_address": "pci/0000/02.0",
                }
            ],
        },
        None,
        "01000000 00000000 01000000 01000000 0e000000 " + b"pci/0000/02.0\0".hex(),
    ),
]


def test_spice_golden_covers_every_type() -> None:
    assert {g[0] for g in GOLDEN} == set(MsgType)


@pytest.mark.parametrize(("kind", "layout", "body", "blob", "hexpayload"), GOLDEN)
def test_spice_golden_roundtrip(kind: MsgType, layout: Layout, body: dict, blob: bytes | None, hexpayload: str) -> None:
    payload = bytes.fromhex(hexpayload.replace(" ", ""))
    assert codec.decode(kind, payload, layout) == (kind, body, blob)
    assert codec.encode(kind, body, layout, blob or b"") == payload


def test_spice_mouse_state_whole_frame() -> None:
    data = frame(2, MsgType.MOUSE_STATE, bytes.fromhex("0a000000140000000200000001"))
    assert data.hex() == "0200000021000000010000000100000000000000000000000d0000000a000000140000000200000001"


def test_spice_guest_caps_are_the_stock_set_without_audio() -> None:
    assert caps_to_words(GUEST_CAPS) == [0x385E7]
    assert words_to_caps([0x385E7]) == GUEST_CAPS


def test_spice_large_message_is_split_and_reassembled_from_any_split() -> None:
    blob = bytes(range(256)) * 20  # 5120 bytes
    data = frame(1, MsgType.CLIPBOARD, codec.encode(MsgType.CLIPBOARD, {"type": 1}, PLAIN, blob))
    sizes, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        sizes.append(size)
        pos += 8 + size
    assert sizes == [2048, 2048, 20 + 4 + 5120 - 4096]
    rx = Reassembler()
    msgs = [m for i in range(len(data)) for m in rx.feed(data[i : i + 1])]  # byte by byte
    assert len(msgs) == 1 and msgs[0].type == MsgType.CLIPBOARD
    assert codec.decode(msgs[0].type, msgs[0].payload, PLAIN)[2] == blob


def test_spice_interleaved_ports_reassemble_independently() -> None:
    big = frame(1, MsgType.CLIPBOARD, codec.encode(MsgType.CLIPBOARD, {"type": 1}, PLAIN, b"x" * 3000))
    first_chunk = 8 + 2048
    mouse = frame(2, MsgType.MOUSE_STATE, bytes(13))
    msgs = list(Reassembler().feed(big[:first_chunk] + mouse + big[first_chunk:]))
    assert [m.type for m in msgs] == [MsgType.MOUSE_STATE, MsgType.CLIPBOARD]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (bytes.fromhex("03000000 14000000".replace(" ", "")) + bytes(20), r"^invalid vdagent port 3$"),
        (
            bytes.fromhex("01000000 01080000".replace(" ", "")) + bytes(2049),
            r"^chunk size 2049 out of range \(max 2048\)$",
        ),
        (bytes.fromhex("0100000004000000") + bytes(4), r"^first chunk of 4 bytes is shorter than a header$"),
        (
            bytes.fromhex("01000000 18000000".replace(" ", ""))
            + bytes.fromhex("01000000 02000000")
            + bytes(8)
            + bytes.fromhex("02000000")
            + bytes(4),
            r"^chunk overruns its message \(lost sync\)$",
        ),
    ],
)
def test_spice_bad_framing_raises(data: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        list(Reassembler().feed(data))


@pytest.mark.parametrize(
    ("kind", "payload", "error"),
    [
        (MsgType.MOUSE_STATE, bytes(12), "MOUSE_STATE: payload is 12 bytes, expected 13"),
        (
            MsgType.MONITORS_CONFIG,
            bytes.fromhex("02000000 00000000".replace(" ", "")) + bytes(20),
            "MONITORS_CONFIG: payload is 28 bytes, expected 48",
        ),
        (
            MsgType.MONITORS_CONFIG,
            bytes.fromhex("01000000 02000000".replace(" ", "")) + bytes(20),
            "MONITORS_CONFIG: payload is 28 bytes, expected 32",
        ),  # tail missing
        (
            MsgType.FILE_XFER_DATA,
            bytes.fromhex("07000000 0a00000000000000".replace(" ", "")) + b"abc",
            "FILE_XFER_DATA: payload is 15 bytes, expected 22",
        ),
        (MsgType.AUDIO_VOLUME_SYNC, bytes([1, 0, 200, 1, 2]), "AUDIO_VOLUME_SYNC: payload is 5 bytes, expected 403"),
        (
            MsgType.GRAPHICS_DEVICE_INFO,
            bytes.fromhex("01000000") + bytes(16) + b"\xff",
            "GRAPHICS_DEVICE_INFO: 1 trailing bytes",
        ),
        (MsgType.DISPLAY_CONFIG, bytes(9), "DISPLAY_CONFIG: payload is 9 bytes, expected 8"),
    ],
)
def test_spice_bad_sizes_are_refused(kind: MsgType, payload: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=f"^{re.escape(error)}$"):
        codec.decode(kind, payload, PLAIN)


def test_spice_one_byte_release_of_stock_daemon_is_accepted() -> None:
    assert codec.decode(MsgType.CLIPBOARD_RELEASE, b"\x01", SEL)[1] == {"selection": 1}


def test_spice_unknown_type_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"^unknown vdagent message type 17$"):
        codec.decode(17, b"", PLAIN)

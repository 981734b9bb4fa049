"""SpiceFrontEnd against the host simulator over a unix socket and a pty."""

from __future__ import annotations

import os
from typing import Any

import pytest
from spice_testkit import Pair, RecordingContext, wait_for

from concierge.testing.spice_host import SPICE_GTK_CAPS
from concierge.transport.spice.wire import GUEST_CAPS, Cap, MsgType, caps_to_words


def _casts(ctx: RecordingContext, type_: str) -> list[Any]:
    return [body for dst, t, body in list(ctx.casts) if t == type_]


def test_spice_handshake_and_request_flag(spice_pair: Pair) -> None:
    host, ctx = spice_pair
    guest = host.handshake()
    assert guest == {"request": 1, "caps": caps_to_words(GUEST_CAPS)}
    announced = wait_for(lambda: _casts(ctx, "spice.announce_capabilities"))
    assert announced[0]["request"] == 0
    # a client attaching to a running agent asks with request=1: the guest answers request=0
    host.announce(request=1)
    port, kind, body, _ = host.read()
    assert (port, kind, body["request"]) == (1, MsgType.ANNOUNCE_CAPABILITIES, 0)


def test_spice_monitors_config_with_and_without_physical_size(spice_pair: Pair) -> None:
    host, ctx = spice_pair
    host.handshake()
    mon = {"height": 800, "width": 1280, "depth": 32, "x": 0, "y": 0}
    host.send(MsgType.MONITORS_CONFIG, {"num_of_monitors": 1, "flags": 1, "monitors": [mon]})
    assert host.read()[:3] == (1, MsgType.REPLY, {"type": 2, "error": 1})
    host.send(
        MsgType.MONITORS_CONFIG,
        {"flags": 3, "monitors": [mon], "physical_sizes": [{"height": 200, "width": 300}]},
    )
    assert host.read()[:3] == (1, MsgType.REPLY, {"type": 2, "error": 1})
    configs = wait_for(lambda: len(_casts(ctx, "spice.monitors_config")) == 2 and _casts(ctx, "spice.monitors_config"))
    assert "physical_sizes" not in configs[0]
    assert configs[1]["physical_sizes"] == [{"height": 200, "width": 300}]


def test_spice_mouse_goes_to_input_on_the_input_lane(spice_pair: Pair) -> None:
    host, ctx = spice_pair
    host.handshake()
    host.mouse(10, 20, 2, 1)
    body = wait_for(lambda: _casts(ctx, "input.mouse"))[0]
    assert body == {"x": 10, "y": 20, "buttons": 2, "display_id": 1}
    assert ("input", "input.mouse", "input", 0.05) in ctx.lanes


def test_spice_server_messages_and_resync_after_garbage(spice_pair: Pair) -> None:
    host, ctx = spice_pair
    host.handshake()
    host.write(bytes.fromhex("0300000004000000") + b"junk")  # port 3: protocol error
    wait_for(lambda: ctx.counters["spice.resync"] == 1)
    host.send(MsgType.CLIENT_DISCONNECTED, {}, port=2)
    info = {
        "channel_id": 0,
        "monitor_id": 0,
        "device_display_id": 1,
        "device_address_len": 14,
        "device_address": "pci/0000/02.0",
    }
    host.send(MsgType.GRAPHICS_DEVICE_INFO, {"display_info": [info]}, port=2)
    wait_for(lambda: _casts(ctx, "spice.graphics_device_info"))
    assert _casts(ctx, "spice.client_disconnected") == [{}]
    assert _casts(ctx, "spice.graphics_device_info")[0]["display_info"][0]["device_address"] == "pci/0000/02.0"
    # a bad payload loses only that message
    host.write(bytes.fromhex("010000001c0000000100000005000000000000000000000008000000") + bytes(8))
    host.send(MsgType.MAX_CLIPBOARD, {"max": 4})
    wait_for(lambda: _casts(ctx, "spice.max_clipboard"))
    assert _casts(ctx, "spice.display_config") == [{"flags": 0, "depth": 0}]


def test_spice_guest_clipboard_serials_limits_and_splitting(spice_pair: Pair) -> None:
    host, ctx = spice_pair
    host.handshake()
    wait_for(lambda: _casts(ctx, "spice.announce_capabilities"))
    ctx.tell("spice.send", {"type": "clipboard_grab", "body": {"selection": 0, "types": [1]}})
    ctx.tell("spice.send", {"type": "clipboard_grab", "body": {"selection": 0, "types": [1]}})
    assert host.read()[2] == {"selection": 0, "serial": 0, "types": [1]}
    assert host.read()[2] == {"selection": 0, "serial": 1, "types": [1]}
    big = bytes(range(256)) * 40
    host_rx_sizes: list[int] = []
    ctx.tell(
        "spice.send",
        {"type": "clipboard", "body": {"selection": 0, "type": 1}},
    )
    ctx.call_soon(lambda: None)
    _port, kind, _body, blob = host.read()
    assert (kind, blob) == (MsgType.CLIPBOARD, b"")
    # large data leaves the guest in <= 2048-byte chunks

    node = ctx.node
    ctx.call_soon(lambda: node.frontend.send(MsgType.CLIPBOARD, {"selection": 0, "type": 1}, big))  # type: ignore[union-attr]
    raw = b""
    while len(raw) < len(big) + 28 + 8 * 6:
        raw += os.read(host.fd, 65536)
    pos = 0
    while pos < len(raw):
        size = int.from_bytes(raw[pos + 4 : pos + 8], "little")
        host_rx_sizes.append(size)
        pos += 8 + size
    assert max(host_rx_sizes) == 2048 and sum(host_rx_sizes) == len(big) + 28
    # MAX_CLIPBOARD: guest data above the client's limit goes out empty
    host.send(MsgType.MAX_CLIPBOARD, {"max": 4})
    wait_for(lambda: _casts(ctx, "spice.max_clipboard"))
    ctx.tell("spice.send", {"type": "clipboard", "body": {"selection": 0, "type": 1}})
    assert host.read()[3] == b""
    # a client GRAB with the expected serial passes, a stale one is dropped
    host.send(MsgType.CLIPBOARD_GRAB, {"selection": 0, "serial": 2, "types": [1]})
    host.send(MsgType.CLIPBOARD_GRAB, {"selection": 0, "serial": 9, "types": [1]})
    wait_for(lambda: ctx.counters["spice.stale_grab"] == 1)
    assert [g["serial"] for g in _casts(ctx, "spice.clipboard_grab")] == [2]


def test_spice_guest_send_policy(spice_pair: Pair) -> None:
    host, ctx = spice_pair
    host.client_caps = SPICE_GTK_CAPS - {Cap.FILE_XFER_DETAILED_ERRORS}
    host.handshake()
    wait_for(lambda: _casts(ctx, "spice.announce_capabilities"))
    ctx.tell(
        "spice.send",
        {"type": "mouse_state", "body": {"x": 1, "y": 1, "buttons": 0, "display_id": 0}},
    )
    ctx.tell("spice.send", {"type": "file_xfer_status", "body": {"id": 3, "result": 4, "data": bytes(8)}})
    port, kind, body, _ = host.read()
    assert (port, kind, body) == (1, MsgType.FILE_XFER_STATUS, {"id": 3, "result": 2, "data": b""})
    assert ctx.counters["spice.send_refused"] == 1


def test_spice_agent_state_drives_port_gate(spice_pair: Pair) -> None:
    host, ctx = spice_pair
    host.handshake()
    wanted: list[bool] = []
    node = ctx.node
    ctx.call_soon(lambda: setattr(node.link, "set_wanted", wanted.append))  # type: ignore[union-attr]
    ctx.tell("session.spice_ready", {"ready": True}, kind="evt")
    ctx.tell("session.spice_ready", {"ready": True}, kind="evt")
    ctx.tell("session.spice_ready", {"ready": False}, kind="evt")
    wait_for(lambda: len(wanted) == 2)
    assert wanted == [True, False]


@pytest.mark.parametrize("size", [1, 262_144, 262_145, 1_048_576, 3 * 1_048_576 + 7])
def test_guest_clipboard_in_several_blobs_arrives_whole(spice_pair: Pair, size: int) -> None:
    """The clipboard actor splits large data into 256 KiB blob frames; the front-end sent only
    the first one, so 1 MiB copied in the guest reached the client as 262,144 bytes (issue 15
    item 5)."""
    host, ctx = spice_pair
    host.handshake()
    wait_for(lambda: _casts(ctx, "spice.announce_capabilities"))
    data = os.urandom(size)
    step = 256 * 1024  # ClipboardSettings.blob_chunk
    blobs = tuple(data[i : i + step] for i in range(0, len(data), step))
    ctx.tell("spice.send", {"type": "clipboard", "body": {"selection": 0, "type": 1}}, blobs=blobs)
    port, kind, _body, blob = host.read(timeout_s=20)
    assert (port, kind) == (1, MsgType.CLIPBOARD)
    assert blob == data

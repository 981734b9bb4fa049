"""Hostile input on the SPICE channel costs one message, never the channel or the transport.

Driven over a real unix socket pair and a pty, as the other front-end tests.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import pytest
from spice_testkit import Pair, RecordingContext, wait_for

from concierge.transport.spice.wire import MsgType, frame


def _casts(ctx: RecordingContext, type_: str) -> list[Any]:
    return [body for _dst, t, body in list(ctx.casts) if t == type_]


def test_megabytes_of_capability_words_are_cut_to_what_can_be_known(spice_pair: Pair) -> None:
    host, ctx = spice_pair
    host.handshake()
    wait_for(lambda: _casts(ctx, "spice.announce_capabilities"))
    # 4 MiB of all-ones capability words: 32 M bit tests and a 4 MiB cast before the fix
    words = 1 << 20
    payload = struct.pack("<I", 0) + b"\xff" * (4 * words)
    started = time.monotonic()
    host.write(frame(1, MsgType.ANNOUNCE_CAPABILITIES, payload))
    announced = wait_for(lambda: _casts(ctx, "spice.announce_capabilities")[1:], timeout_s=60.0)
    elapsed = time.monotonic() - started
    assert len(announced[-1]["caps"]) == 8
    assert elapsed < 10.0  # generous: the unbounded decode took about a minute of CPU per 4 MiB
    # the channel still works
    host.send(MsgType.MAX_CLIPBOARD, {"max": 4})
    wait_for(lambda: _casts(ctx, "spice.max_clipboard"))


@pytest.mark.parametrize(
    "body",
    [
        {"selection": "x", "types": [1]},
        {"selection": -1, "types": [1]},
        {"selection": 1 << 70, "types": [1]},
        {"selection": [], "types": [1]},
        {"selection": 0, "types": "abc"},
        {"selection": 0, "types": [1 << 40]},
    ],
)
def test_wrongly_typed_send_is_refused_and_the_channel_keeps_working(spice_pair: Pair, body: dict[str, Any]) -> None:
    host, ctx = spice_pair
    host.handshake()
    wait_for(lambda: _casts(ctx, "spice.announce_capabilities"))
    ctx.tell("spice.send", {"type": "clipboard_grab", "body": body})
    ctx.tell("spice.send", {"type": "clipboard_grab", "body": {"selection": 0, "types": [1]}})
    assert host.read()[2] == {"selection": 0, "serial": 0, "types": [1]}
    refused = ctx.counters.get("spice.send_refused", 0) + ctx.counters.get("spice.bad_send", 0)
    assert refused == 1

"""The streaming reader in-process: limits, splits, random garbage, then a working resync."""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from concierge.testing.context import FakeContext
from concierge.testing.qgafakes import FAKE_ROUTES, FakeCapabilities
from concierge.transport.qga.frontend import QgaFrontEnd
from concierge.transport.qga.lexer import JsonStreamer


class Sink:
    """A HostLink that records writes."""

    name = "test"
    connected = True

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


def _stream(**limits: int) -> tuple[JsonStreamer, list[tuple[Any, str | None]]]:
    out: list[tuple[Any, str | None]] = []
    return JsonStreamer(lambda v, e: out.append((v, e)), **limits), out


def test_objects_with_and_without_newlines_and_any_split() -> None:
    payload = b'{"a":[1,2.5,"x\\u00e9"]}\n{"b":{"c":null}}{"d":true}'
    expected = [({"a": [1, 2.5, "x\u00e9"]}, None), ({"b": {"c": None}}, None), ({"d": True}, None)]
    for size in (1, 2, 3, 7, len(payload)):
        streamer, out = _stream()
        for i in range(0, len(payload), size):
            streamer.feed(payload[i : i + size])
        assert out == expected, size
        assert streamer.idle


def test_limits_bound_memory_and_recover() -> None:
    streamer, out = _stream(max_token_size=100, max_token_count=10, max_nesting=4)
    streamer.feed(b'"' + b"x" * 500 + b'"')
    assert out[0] == (None, "JSON token size limit exceeded")
    out.clear()
    streamer.feed(b"\xff[1,2,3,4,5,6,7,8,9,10]")
    assert (None, "JSON token count limit exceeded") in out
    out.clear()
    streamer.feed(b"\xff[[[[[1]]]]]")
    assert (None, "JSON nesting depth limit exceeded") in out
    out.clear()
    streamer.feed(b'\xff{"ok":1}')
    assert out[-1] == ({"ok": 1}, None)
    assert len(streamer.token) == 0


def test_deep_nesting_does_not_hit_python_recursion() -> None:
    streamer, out = _stream()
    streamer.feed(b"[" * 1024 + b"]" * 1024)
    value, error = out[0]
    assert error is None
    depth = 0
    while value:
        value = value[0]
        depth += 1
    assert depth == 1023


def _frontend() -> tuple[FakeContext, QgaFrontEnd, Sink]:
    fake = FakeCapabilities(slow_s=0.0)
    ctx = FakeContext("transport", peers=fake.peers())
    sink = Sink()
    return ctx, QgaFrontEnd(ctx, sink, {}, routes=FAKE_ROUTES), sink


def _on_bridge(ctx: FakeContext, frontend: QgaFrontEnd, data: bytes) -> None:
    done = threading.Event()

    def run() -> None:
        try:
            frontend.received(data)
        finally:
            done.set()

    ctx.call_soon(run)
    assert done.wait(5)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=64), max_size=12),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
def test_random_bytes_then_sync_delimited_always_resynchronises(chunks: list[bytes], sync_id: int) -> None:
    ctx, frontend, sink = _frontend()
    try:
        for chunk in chunks:
            _on_bridge(ctx, frontend, chunk)
        sink.data = b""
        sync = b'\xff{"execute":"guest-sync-delimited","arguments":{"id":%d}}' % sync_id
        _on_bridge(ctx, frontend, sync)
        assert sink.data.endswith(b'\xff{"return": %d}\n' % sync_id)
        assert frontend.streamer.idle
    finally:
        ctx.close()

"""The host stream delivers a large message in order with back-pressure (real socket pair).

A producer of 64 pieces of 1 MiB is pulled only while the host reads: with the host not
reading, only a few pieces are ever taken; once it reads, every byte arrives in order, and a
small message written after the stream arrives after it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Generator, Iterator

import pytest

from concierge.testing.pollctx import PollingContext
from concierge.transport.host.stream import StreamLink

PIECE = 1 << 20
PIECES = 64
HIGH_WATERMARK = 256 << 10


@pytest.fixture
def ctx() -> Iterator[PollingContext]:
    context = PollingContext("transport", {})
    yield context
    context.close()


def _on_bridge(ctx: PollingContext, func: object) -> None:
    done = threading.Event()

    def run() -> None:
        func()  # type: ignore[operator]
        done.set()

    ctx.call_soon(run)
    assert done.wait(5)


def test_stream_is_pulled_only_while_the_host_reads(ctx: PollingContext) -> None:
    guest, host = socket.socketpair()
    guest.setblocking(False)
    pulled: list[int] = []
    overflowed: list[bool] = []

    def pieces() -> Generator[bytes, None, None]:
        for i in range(PIECES):
            pulled.append(i)
            yield bytes((i,)) * PIECE

    link = StreamLink(
        ctx,
        "test",
        on_ready=lambda revents: link.flush(),
        on_overflow=lambda: overflowed.append(True),
        high_watermark=HIGH_WATERMARK,
    )

    def start() -> None:
        link.attached = True
        link.bind(guest.fileno())
        link.write_stream(pieces())
        link.write(b"after\n")

    _on_bridge(ctx, start)
    time.sleep(0.3)  # the host reads nothing meanwhile
    # the socket buffer (a few hundred KiB) plus the high watermark: a few pieces, never all 64
    assert 1 <= len(pulled) <= 4
    received = bytearray()
    want = PIECES * PIECE + len(b"after\n")
    host.settimeout(10)
    while len(received) < want:
        chunk = host.recv(1 << 20)
        assert chunk
        received += chunk
    assert len(pulled) == PIECES
    for i in range(PIECES):
        block = received[i * PIECE : (i + 1) * PIECE]
        assert block.count(bytes((i,))) == PIECE, f"piece {i} corrupted or out of order"
    assert received.endswith(b"after\n")
    assert not overflowed
    idle: list[bool] = []
    _on_bridge(ctx, lambda: link.when_idle(lambda: idle.append(True)))
    assert idle == [True]
    _on_bridge(ctx, link.unwatch)
    guest.close()
    host.close()


def test_dropping_the_output_closes_the_producer(ctx: PollingContext) -> None:
    guest, host = socket.socketpair()
    guest.setblocking(False)
    closed: list[bool] = []

    def pieces() -> Generator[bytes, None, None]:
        try:
            while True:
                yield b"x" * PIECE
        finally:
            closed.append(True)

    link = StreamLink(ctx, "test", on_ready=lambda revents: link.flush(), on_overflow=lambda: None)

    def start() -> None:
        link.attached = True
        link.bind(guest.fileno())
        link.write_stream(pieces())

    _on_bridge(ctx, start)
    idle: list[bool] = []
    _on_bridge(ctx, lambda: link.when_idle(lambda: idle.append(True)))
    assert idle == []  # an endless stream is never idle ...
    _on_bridge(ctx, link.drop_output)  # ... until the host goes away
    assert closed == [True]
    assert idle == [True]
    _on_bridge(ctx, link.unwatch)
    guest.close()
    host.close()

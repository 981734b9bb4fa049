"""Reply flow of the QGA front-end: large replies in pieces, heavy commands one at a time per
connection, deadlines without a timer per request (real unix socket, fake capability actors)."""

from __future__ import annotations

import gc
import json
import time

import pytest

from concierge.testing.qga_inproc import Agent
from concierge.testing.qga_peer import RawClient
from concierge.transport.qga.bigreply import STREAM_THRESHOLD, is_large, reply_pieces
from concierge.transport.qga.frontend import QgaFrontEnd
from concierge.transport.qga.replies import return_line


@pytest.mark.parametrize(
    ("req_id", "has_id"),
    [(None, False), (7, True), ("x\u00e9", True), ({"b": [1, 2], "a": None}, True)],
)
@pytest.mark.parametrize(
    "text",
    [
        "QUJD" * (STREAM_THRESHOLD // 3),  # base64, the common case
        ('caf\u00e9 "q" \\ \n \U0001f600 ' * (STREAM_THRESHOLD // 10))[
            : STREAM_THRESHOLD + 17
        ],  # escapes across pieces
    ],
)
def test_pieces_are_exactly_the_whole_line(req_id: object, has_id: bool, text: str) -> None:
    value = {"count": len(text), "buf-b64": text, "eof": False}
    assert is_large(value)
    assert b"".join(reply_pieces(value, req_id, has_id)) == return_line(value, req_id, has_id)


def test_small_replies_are_not_streamed() -> None:
    assert not is_large({"buf-b64": "QUJD" * 1000, "count": 3000})
    assert not is_large([1, 2, 3])


def test_pipelined_heavy_commands_are_sent_one_at_a_time_in_order(agent: Agent) -> None:
    reads = b"".join(
        json.dumps({"execute": "guest-file-read", "arguments": {"handle": 1}, "id": i}).encode() for i in range(4)
    )
    with RawClient(agent.socket_path) as client:
        client.resync()
        client.send(reads + b'{"execute":"guest-get-time","id":"t"}')
        ids = [json.loads(client.read_line())["id"] for _ in range(5)]
    assert ids == [0, 1, 2, 3, "t"]
    assert agent.ctx.counters["qga.heavy_waits"] == 3  # the first went at once, three waited


def test_routed_requests_leave_no_timers_behind(agent: Agent) -> None:
    request = b'{"execute":"guest-get-time"}'
    with RawClient(agent.socket_path) as client:
        client.resync()
        for _ in range(20):
            client.send(request * 100)
            client.read_lines(100)
    # one deadline timer per connection (re-armed), not one per request kept until its timeout
    assert len(agent.ctx._timers) < 10


def test_closed_connections_are_not_kept_alive(agent: Agent) -> None:
    for _ in range(50):
        with RawClient(agent.socket_path) as client:
            client.send(b'{"execute":"guest-get-time"}')
            client.read_line()
    time.sleep(0.3)  # the transport notices the closes
    gc.collect()
    alive = sum(1 for obj in gc.get_objects() if isinstance(obj, QgaFrontEnd))
    # none of the 50 closed connections' front-ends (and their queues and links) is left
    assert alive <= 1

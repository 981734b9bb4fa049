"""Data plane and event plane between real actor processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from concierge.errors import ErrorCode
from concierge.runtime.bridge import LANE_MAX
from concierge.testing.rpc import ActorClient

ECHO = {"entry": "concierge.testing.nodes:EchoNode"}


def test_request_reply_between_two_actor_processes(agent_factory: Any) -> None:
    agent = agent_factory({"a": ECHO, "b": ECHO})
    agent.start()
    with ActorClient(agent.runtime_dir) as client:
        assert client.request("a", "echo", {"x": [1, 2]}).unwrap() == {"x": [1, 2]}
        b_pid = client.request("b", "pid").unwrap()
        relayed = client.request("a", "ask", {"dst": "b", "type": "pid"}).unwrap()
        assert relayed["ok"] and relayed["body"] == b_pid
        unknown = client.request("a", "nope")
        assert unknown.code == ErrorCode.UNKNOWN_TYPE
        missing = client.request("a", "ask", {"dst": "ghost", "type": "pid"}, timeout_s=10).unwrap()
        assert not missing["ok"] and missing["code"] == "TIMEOUT"


def test_events_reach_subscribers(agent_factory: Any) -> None:
    agent = agent_factory(
        {"pub": ECHO, "rec": {"entry": "concierge.testing.nodes:RecorderNode", "settings": {"subscribe": ["host."]}}}
    )
    agent.start()
    with ActorClient(agent.runtime_dir) as client:
        deadline = time.monotonic() + 10
        seen: list[Any] = []
        while time.monotonic() < deadline and not seen:
            client.request("pub", "publish", {"topic": "host.connected", "body": {"channel": "qga"}}).unwrap()
            client.request("pub", "publish", {"topic": "other.thing", "body": 1}).unwrap()
            time.sleep(0.1)
            seen = [r for r in client.request("rec", "recorded").unwrap() if r["kind"] == "evt"]
        assert seen and seen[0]["type"] == "host.connected" and seen[0]["body"] == {"channel": "qga"}
        assert all(r["type"].startswith("host.") for r in seen)


def test_flood_does_not_starve_requests(agent_factory: Any) -> None:
    agent = agent_factory(
        {
            "flood": {"entry": "concierge.testing.nodes:FloodNode"},
            "recorder": {"entry": "concierge.testing.nodes:RecorderNode"},
            "echo": ECHO,
        }
    )
    agent.start()
    with ActorClient(agent.runtime_dir) as client:
        client.cast("flood", "flood", {"count": 20000, "target": "recorder"})
        started = time.monotonic()
        assert client.request("echo", "echo", 1, timeout_s=10).unwrap() == 1
        assert time.monotonic() - started < 5


def _counters(agent: Any, actor_id: str, wanted: Callable[[dict[str, int]], bool]) -> dict[str, int]:
    """An actor's counters once ``wanted`` holds (they arrive with heartbeats)."""
    deadline = time.monotonic() + 10
    counters: dict[str, int] = {}
    while time.monotonic() < deadline:
        metrics = json.loads(agent.cli("--json", "metrics").stdout)
        counters = next(a["counters"] for a in metrics["actors"] if a["id"] == actor_id)
        if wanted(counters):
            return counters
        time.sleep(0.2)
    raise AssertionError(f"{actor_id} counters never matched: {counters}")


def test_small_messages_take_the_lane_and_large_ones_zeromq(agent_factory: Any) -> None:
    agent = agent_factory({"a": ECHO, "b": ECHO})
    agent.start()
    big = "y" * (LANE_MAX + 1000)
    with ActorClient(agent.runtime_dir) as client:
        for _ in range(3):  # small request, small reply: both datagrams
            assert client.request("a", "ask", {"dst": "b", "type": "echo", "body": "hi"}).unwrap()["body"] == "hi"
        # a large request goes through ZeroMQ (and its large reply back the same way)
        assert client.request("a", "ask", {"dst": "b", "type": "echo", "body": big}).unwrap()["body"] == big
        # a small request whose reply does not fit: the answer comes through a's inbox
        relayed = client.request("a", "ask", {"dst": "b", "type": "big", "body": LANE_MAX + 1}).unwrap()
        assert relayed["ok"] and len(relayed["body"]) == LANE_MAX + 1
    b = _counters(agent, "b", lambda c: c.get("lane.in", 0) >= 4)
    assert b["msg.in"] >= 5 and b.get("lane.refused", 0) == 0
    a = _counters(agent, "a", lambda c: c.get("lane.in", 0) >= 3)
    assert a.get("lane.refused", 0) == 0


def test_garbage_on_a_lane_is_counted_and_the_actor_keeps_serving(agent_factory: Any) -> None:
    agent = agent_factory({"b": ECHO})
    agent.start()
    lane = str(agent.runtime_dir / "core" / "actors" / "b.lane")
    junk = [
        b"",
        b"\xff" * 10,
        b"\x92\x93\xa3req",  # truncated
        b"\x92\x97\xa3req\xa4echo\x01\x00\xa1a\xa1b\x00",  # header without its body
        b"\x92\x97\x01\x02\x03\x04\x05\x06\x07\xc0",  # header fields of the wrong types
        b"\x92" + b"\x00" * 70_000,  # larger than a lane datagram may be
    ]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
        for data in junk:
            sender.sendto(data, lane)
    with ActorClient(agent.runtime_dir) as client:
        assert client.request("b", "echo", 7).unwrap() == 7
    counters = _counters(agent, "b", lambda c: c.get("msg.malformed", 0) >= len(junk))
    assert counters["msg.malformed"] == len(junk)
    assert agent.actor("b")["restarts"] == 0


def test_a_restarted_peer_is_reached_again_on_a_fresh_lane(agent_factory: Any) -> None:
    agent = agent_factory({"a": ECHO, "b": ECHO})
    agent.start()
    with ActorClient(agent.runtime_dir) as client:
        first = client.request("a", "ask", {"dst": "b", "type": "pid"}).unwrap()["body"]
        os.kill(first, signal.SIGKILL)
        agent.wait_for(
            lambda s: any(x["id"] == "b" and x["state"] == "RUNNING" and x["pid"] != first for x in s["actors"]),
            10,
            "b restarted",
        )
        again = client.request("a", "ask", {"dst": "b", "type": "pid"}).unwrap()
        assert again["ok"] and again["body"] not in (first, None)


def test_a_request_to_an_actor_that_dies_is_answered_at_once(agent_factory: Any) -> None:
    """b never answers and is then killed: a's request fails UNAVAILABLE when the supervisor
    announces b's exit, not at a's 5 s deadline (what the host would otherwise wait for)."""
    agent = agent_factory({"a": ECHO, "b": {"entry": "concierge.testing.nodes:HangNode"}})
    agent.start()
    with ActorClient(agent.runtime_dir) as client:
        b_pid = client.request("b", "pid").unwrap()
        outcome: list[Any] = []
        asking = threading.Thread(
            target=lambda: outcome.append(client.request("a", "ask", {"dst": "b", "type": "hang"}, timeout_s=10))
        )
        asking.start()
        time.sleep(0.5)  # the request sits in b's deadlocked actor thread
        killed = time.monotonic()
        os.kill(b_pid, signal.SIGKILL)
        asking.join(10)
        answered_after = time.monotonic() - killed
    relayed = outcome[0].unwrap()
    assert not relayed["ok"] and relayed["code"] == "UNAVAILABLE"
    assert "b stopped before it answered" in relayed["message"]
    assert answered_after < 2.5, answered_after  # a's own deadline was 5 s

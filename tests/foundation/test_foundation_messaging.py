"""Data plane and event plane between real actor processes."""

from __future__ import annotations

import time
from typing import Any

from concierge.errors import ErrorCode
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

"""No callback may raise out to the event loop and take the actor (and its other peers) down.

Node code turns a peer's mistake into an error reply or a closed connection itself; the poll
loop is the last line of defence behind it: a raising fd callback or timer costs that one event,
is logged and counted, and the process goes on answering with the same pid.
"""

from __future__ import annotations

import time
from typing import Any

from concierge.testing.rpc import ActorClient


def test_a_raising_fd_callback_or_timer_costs_one_event_not_the_actor(agent_factory: Any) -> None:
    agent = agent_factory({"bug": {"entry": "concierge.testing.nodes:BuggyCallbackNode"}})
    agent.start()
    with ActorClient(agent.runtime_dir) as client:
        pid = client.request("bug", "pid").unwrap()
        for _ in range(5):
            assert client.request("bug", "poke_fd").unwrap() is True
            assert client.request("bug", "poke_timer").unwrap() is True
        time.sleep(0.5)
        assert client.request("bug", "echo", "still here").unwrap() == "still here"
        assert client.request("bug", "pid").unwrap() == pid, "the actor was restarted"
    actor = agent.actor("bug")
    assert actor["restarts"] == 0 and actor["state"] == "RUNNING"
    log = agent.log_path.read_text(errors="replace")
    # five timers; the five fd pokes may coalesce into fewer reads
    assert log.count("a loop callback raised") >= 6, log[-2000:]
    assert "fd callback bug (on purpose)" in log and "timer bug (on purpose)" in log

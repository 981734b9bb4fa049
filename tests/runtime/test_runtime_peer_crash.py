"""Issue 14 item 7: every request in flight when its peer crashes is answered at once.

``a`` keeps requests in flight to ``b`` (most on the lane, every fifth through ZeroMQ) while
``b`` is SIGKILLed again and again. A request the dead process took with it must be answered
UNAVAILABLE when the death is seen, not TIMEOUT at its 10 s deadline (what the host would
otherwise wait for). Real processes, real supervisor, real kills.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from concierge.testing.rpc import ActorClient

KILLS = 30
DEADLINE_S = 10.0
#: far below the deadline, generous for a loaded 2-core machine
ANSWERED_WITHIN_S = 3.0


@pytest.mark.slow
def test_requests_in_flight_at_a_crash_never_wait_for_their_deadline(agent_factory: Any) -> None:
    agent = agent_factory(
        {
            "a": {"entry": "concierge.testing.nodes:EchoNode"},
            "b": {"entry": "concierge.testing.nodes:LagNode"},
        },
        extra="[supervisor]\nintensity = 1000\nperiod_s = 60.0\nbackoff_base_s = 0.01\nbackoff_cap_s = 0.05\n",
    )
    agent.start()
    with ActorClient(agent.runtime_dir) as client:
        pid = client.request("b", "pid").unwrap()
        result: list[Any] = []
        load = {"dst": "b", "seconds": 20.0, "depth": 16, "lag_s": 0.02, "timeout_s": DEADLINE_S, "zmq_every": 5}
        barrage = threading.Thread(target=lambda: result.append(client.request("a", "barrage", load, timeout_s=60)))
        barrage.start()
        kills = 0
        stop_at = time.monotonic() + 18.0
        while kills < KILLS and time.monotonic() < stop_at:
            time.sleep(0.15)  # let requests pile up in the new incarnation
            os.kill(pid, signal.SIGKILL)
            kills += 1
            agent.wait_for(
                lambda s, old=pid: any(
                    x["id"] == "b" and x["state"] == "RUNNING" and x["pid"] not in (old, None) for x in s["actors"]
                ),
                10,
                "b restarted",
            )
            pid = agent.actor("b")["pid"]
        barrage.join(60)
    summary = result[0].unwrap()
    assert kills >= 10, kills
    assert summary["outcomes"].get("ok", 0) > 0, summary
    assert "TIMEOUT" not in summary["outcomes"], summary
    assert summary["slowest_s"] < ANSWERED_WITHIN_S, summary

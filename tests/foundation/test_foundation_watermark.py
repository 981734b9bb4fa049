"""Per-actor memory watermarks, on a real agent: an actor over its soft watermark refuses bulk
requests with BACKPRESSURE and keeps serving the rest; over its hard watermark it is restarted,
but only once idle, so nothing in flight is lost. Memory is real (written pages), sampled by the
actor itself on its heartbeat."""

from __future__ import annotations

import time
from typing import Any

from concierge.errors import ErrorCode
from concierge.testing.rpc import ActorClient

BALLAST = {"entry": "concierge.testing.ballast:BallastNode"}
# an idle actor holds ~10-30 MiB anonymous; ballast of 120 MiB crosses soft, 250 MiB hard
LIMITS = "[agent]\nmemory_soft_mb = 100\nmemory_hard_mb = 200\nmemory_idle_s = 3.0\n"
#: writing 250 MiB takes seconds on a loaded 2-CPU machine
GROW_TIMEOUT_S = 60


def _until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_soft_watermark_sheds_bulk_requests_then_recovers(agent_factory: Any) -> None:
    agent = agent_factory({"b": BALLAST}, extra=LIMITS)
    agent.start()
    with ActorClient(agent.runtime_dir) as client:
        pid = client.request("b", "pid").unwrap()
        assert client.request("b", "file.read").unwrap() == "data"
        client.request("b", "grow", {"mb": 120}, timeout_s=GROW_TIMEOUT_S).unwrap()
        refused = _until(
            lambda: (r := client.request("b", "file.read")).code == ErrorCode.BACKPRESSURE and r,
            10,
            "BACKPRESSURE over the soft watermark",
        )
        assert "memory watermark" in refused.message
        assert client.request("b", "pid").unwrap() == pid  # small requests still served
        client.request("b", "drop").unwrap()
        _until(lambda: client.request("b", "file.read").ok, 10, "bulk served again under the watermark")
        assert client.request("b", "pid").unwrap() == pid  # never restarted
    assert agent.actor("b")["restarts"] == 0


def test_hard_watermark_restarts_the_actor_only_once_idle(agent_factory: Any) -> None:
    agent = agent_factory({"b": BALLAST}, extra=LIMITS)
    agent.start()
    with ActorClient(agent.runtime_dir) as client:
        pid = client.request("b", "pid").unwrap()
        client.request("b", "grow", {"mb": 250}, timeout_s=GROW_TIMEOUT_S).unwrap()
        # busy for longer than memory_idle_s (a message every 0.3 s): refused bulk work, no restart
        busy_until = time.monotonic() + 5.0
        while time.monotonic() < busy_until:
            assert client.request("b", "pid", timeout_s=10).unwrap() == pid
            time.sleep(0.3)
        assert client.request("b", "file.read").code == ErrorCode.BACKPRESSURE
        # quiet: the actor gives its memory back by restarting (exit 75, restarted by the supervisor)
        agent.wait_for(lambda s: _actor(s)["restarts"] >= 1 and _actor(s)["state"] == "RUNNING", 30, "restart")
        new_pid = client.request("b", "pid", timeout_s=10).unwrap()
        assert new_pid != pid
        assert client.request("b", "file.read").unwrap() == "data"


def _actor(status: dict[str, Any]) -> dict[str, Any]:
    return next(a for a in status["actors"] if a["id"] == "b")


def test_watermark_keys_are_validated_and_named(tmp_path: Any) -> None:
    from concierge.config.loader import load_config
    from concierge.errors import ConfigError

    main = tmp_path / "concierge.toml"
    main.write_text("[agent]\nmemory_soft_mb = -1\n")
    try:
        load_config(main, tmp_path / "none.d", explicit=True)
    except ConfigError as err:
        assert "agent.memory_soft_mb" in str(err)
    else:
        raise AssertionError("negative watermark accepted")

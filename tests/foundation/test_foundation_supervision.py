"""Supervision behaviour of a real ``concierge run`` with fake actors in real processes."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psutil

ECHO = {"entry": "concierge.testing.nodes:EchoNode"}
FAST = (
    "[supervisor]\nbackoff_base_s = 0.05\nintensity = 3\nperiod_s = 30.0\n"
    "[agent]\nheartbeat_interval_s = 0.2\nheartbeat_timeout_s = 3.0\nactor_unresponsive_s = 1.0\n"
)


def pids(status: dict[str, Any]) -> dict[str, int]:
    return {a["id"]: a["pid"] for a in status["actors"]}


def test_sigkill_of_each_actor_restarts_only_that_actor(agent_factory: Any) -> None:
    agent = agent_factory({"one": ECHO, "two": ECHO, "three": ECHO}, extra=FAST)
    agent.start()
    for victim in ("one", "two", "three"):
        before = pids(agent.status())
        os.kill(before[victim], signal.SIGKILL)
        after = agent.wait_for(
            lambda s, v=victim, old=before[victim]: (
                next(a for a in s["actors"] if a["id"] == v)["state"] == "RUNNING" and pids(s)[v] not in (None, old)
            ),
            15,
            f"{victim} running again",
        )
        for other, pid in before.items():
            if other != victim:
                assert pids(after)[other] == pid, f"{other} was restarted too"
        entry = next(a for a in after["actors"] if a["id"] == victim)
        assert entry["restarts"] >= 1
        assert "SIGKILL" in entry["last_exit"]


def test_crash_loop_goes_fatal_and_siblings_keep_running(agent_factory: Any) -> None:
    agent = agent_factory(
        {"stable": ECHO, "crashy": {"entry": "concierge.testing.nodes:CrashNode", "settings": {"after_s": 0.05}}},
        extra=FAST,
    )
    agent.start(wait=False)
    status = agent.wait_for(
        lambda s: next(a for a in s["actors"] if a["id"] == "crashy")["state"] == "FATAL", 30, "crashy FATAL"
    )
    crashy = next(a for a in status["actors"] if a["id"] == "crashy")
    stable = next(a for a in status["actors"] if a["id"] == "stable")
    assert crashy["restarts"] == 3
    assert "intensity" in crashy["detail"]
    assert stable["state"] == "RUNNING"
    assert stable["restarts"] == 0
    assert agent.proc.poll() is None, "a non-essential FATAL must not stop the agent"


def test_hung_actor_thread_is_detected_and_restarted(agent_factory: Any) -> None:
    agent = agent_factory({"hang": {"entry": "concierge.testing.nodes:HangNode"}, "other": ECHO}, extra=FAST)
    agent.start()
    before = pids(agent.status())
    from concierge.testing.rpc import ActorClient

    with ActorClient(agent.runtime_dir, "tester") as client:
        client.cast("hang", "hang")
    status = agent.wait_for(
        lambda s: (
            pids(s)["hang"] not in (None, before["hang"])
            and next(a for a in s["actors"] if a["id"] == "hang")["state"] == "RUNNING"
        ),
        20,
        "hung actor restarted",
    )
    entry = next(a for a in status["actors"] if a["id"] == "hang")
    assert "unresponsive" in entry["last_exit"]
    assert pids(status)["other"] == before["other"]


def test_actor_config_error_is_fatal_without_restart(agent_factory: Any) -> None:
    agent = agent_factory({"bad": {"entry": "concierge.testing.nodes:ConfigErrorNode"}, "ok": ECHO}, extra=FAST)
    agent.start(wait=False)
    status = agent.wait_for(
        lambda s: next(a for a in s["actors"] if a["id"] == "bad")["state"] == "FATAL", 20, "bad FATAL"
    )
    bad = next(a for a in status["actors"] if a["id"] == "bad")
    assert bad["restarts"] == 0
    assert bad["last_exit"].startswith("exit 78")
    assert "colour" in agent.cli("logs", "bad").stdout


def test_unknown_entry_is_a_config_error(agent_factory: Any) -> None:
    agent = agent_factory({"ghost": {"entry": "concierge.testing.nodes:NoSuchNode"}}, extra=FAST)
    agent.start(wait=False)
    status = agent.wait_for(lambda s: s["actors"][0]["state"] == "FATAL", 20, "ghost FATAL")
    assert status["actors"][0]["last_exit"].startswith("exit 78")


def test_unavailable_actor_backs_off_slowly(agent_factory: Any) -> None:
    agent = agent_factory({"dev": {"entry": "concierge.testing.nodes:UnavailableNode"}}, extra=FAST)
    agent.start(wait=False)
    status = agent.wait_for(lambda s: s["actors"][0]["last_exit"].startswith("exit 69"), 20, "first exit")
    time.sleep(2.0)
    status = agent.status()
    entry = status["actors"][0]
    assert entry["state"] == "BACKOFF"
    assert entry["restarts"] == 0, "unavailable is retried on parole, not hot-looped"


def test_essential_actor_giving_up_stops_the_agent_non_zero(agent_factory: Any) -> None:
    agent = agent_factory(
        {"core": {"entry": "concierge.testing.nodes:CrashNode", "essential": True}, "side": ECHO}, extra=FAST
    )
    agent.start(wait=False)
    assert agent.proc is not None
    code = agent.proc.wait(timeout=40)
    assert code == 70
    assert "essential actor core gave up" in agent.log_tail(80)


def test_supervisor_sigkill_leaves_no_orphans(agent_factory: Any) -> None:
    agent = agent_factory({"one": ECHO, "two": ECHO}, extra=FAST)
    agent.start()
    children = [p for p in pids(agent.status()).values() if p]
    assert agent.proc is not None
    agent.proc.kill()
    agent.proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in children
    ):
        time.sleep(0.05)
    alive = [p for p in children if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"orphans left: {alive}"


def test_a_paused_guest_does_not_cost_a_restart(agent_factory: Any) -> None:
    """Every process of the agent stopped at once for longer than every watchdog limit (what a
    paused or migrating VM, or a host starving the guest, looks like from inside): when they all
    run again, nobody is killed for the silence and nobody exits as an orphan."""
    stall = "[agent]\nheartbeat_interval_s = 0.2\nheartbeat_timeout_s = 1.5\nactor_unresponsive_s = 1.0\n"
    agent = agent_factory({"one": ECHO, "two": ECHO}, extra=stall)
    agent.start()
    before = pids(agent.status())
    assert agent.proc is not None
    everyone = [p.pid for p in psutil.Process(agent.proc.pid).children(recursive=True)] + [agent.proc.pid]
    for pid in everyone:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(4.0)  # > heartbeat_timeout_s, > actor_unresponsive_s, > the actors' orphan limit (3 s)
    for pid in reversed(everyone):
        os.kill(pid, signal.SIGCONT)
    time.sleep(2.0)  # several heartbeats and watchdog ticks after the pause
    after = agent.status()
    assert pids(after) == before
    assert all(a["state"] == "RUNNING" and a["restarts"] == 0 for a in after["actors"]), after
    assert "supervisor.stalled" in agent.log_path.read_text() or "did not run for" in agent.log_path.read_text()

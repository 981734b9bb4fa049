"""Pure policy, state, config, envelope and logging units (no processes)."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from concierge.config.loader import load_config
from concierge.errors import ActorError, ConfigError, ErrorCode, ProtocolError
from concierge.logs import JsonFormatter, Secret
from concierge.runtime import envelope
from concierge.runtime.node import Incoming
from concierge.runtime.service import ServiceNode, handler
from concierge.supervisor.policy import ExitClass, RestartWindow, backoff_delay, classify_exit, describe_exit
from concierge.supervisor.state import State, allowed
from concierge.testing.clock import FakeClock
from concierge.testing.context import FakeContext


def test_exit_classification() -> None:
    assert classify_exit(0) == ExitClass.NORMAL
    assert classify_exit(78) == ExitClass.CONFIG and classify_exit(64) == ExitClass.CONFIG
    assert classify_exit(69) == ExitClass.UNAVAILABLE
    assert classify_exit(70) == ExitClass.CRASH and classify_exit(-9) == ExitClass.CRASH
    assert describe_exit(-9) == "signal SIGKILL" and describe_exit(3) == "exit 3"
    # the edges: 0 is an exit, -1 is the first signal, an unknown signal number stays a number
    assert describe_exit(0) == "exit 0" and describe_exit(-1) == "signal SIGHUP"
    assert describe_exit(-200) == "signal 200"


class _TopOfRange(random.Random):
    """Jitter pinned to its upper end, so the un-jittered ceiling is visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_is_jittered_exponential_and_capped() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, 0.1, 2.0, rng) for n in range(8)]
    for n, delay in enumerate(delays):
        top = min(2.0, 0.1 * 2**n)
        assert top * 0.5 <= delay <= top
    # the exponent stops at 30: a millionth attempt neither overflows nor grows past 2**30 * base
    assert backoff_delay(10**6, 1.0, 2.0**40, _TopOfRange()) == 2.0**30
    assert backoff_delay(30, 1.0, 2.0**40, _TopOfRange()) == 2.0**30
    assert backoff_delay(29, 1.0, 2.0**40, _TopOfRange()) == 2.0**29


def test_restart_window_edges_are_inclusive() -> None:
    """A restart exactly ``period_s`` ago still counts, both in add() and in recent()."""
    window = RestartWindow(intensity=1, period_s=10)
    assert not window.add(100.0)
    assert window.add(110.0), "100 is exactly one period before 110: still inside the window"
    assert window.recent(110.0) == 2
    assert window.recent(110.5) == 1


def test_restart_window_with_fake_clock() -> None:
    clock = FakeClock()
    window = RestartWindow(intensity=2, period_s=10)
    assert not window.add(clock.monotonic())
    clock.advance(1)
    assert not window.add(clock.monotonic())
    clock.advance(1)
    assert window.add(clock.monotonic())
    clock.advance(30)
    assert not window.add(clock.monotonic())
    assert window.recent(clock.monotonic()) == 1


def test_state_table() -> None:
    assert allowed(State.STOPPED, State.STARTING)
    assert allowed(State.RUNNING, State.BACKOFF)
    assert not allowed(State.STOPPED, State.RUNNING)
    assert not allowed(State.STOPPING, State.RUNNING)
    assert allowed(State.RUNNING, State.STOPPED), "exits on its own while the agent shuts down"


def test_defaults_load_and_unknown_keys_are_named(tmp_path: Path) -> None:
    config, used = load_config(tmp_path / "absent.toml")
    assert used == [] and config.actors["transport"].essential
    bad = tmp_path / "bad.toml"
    bad.write_text("[actors.monitor]\nentry = 'x:Y'\nrestrat = 'permanent'\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert str(bad) in str(err.value) and "actors.monitor.restrat" in str(err.value)
    bad.write_text("[agent\n")
    with pytest.raises(ConfigError, match="TOML syntax"):
        load_config(bad)
    assert config.agent.lane_spin_us == 50
    bad.write_text("[agent]\nlane_spin_us = -5\n")
    with pytest.raises(ConfigError, match="lane_spin_us"):
        load_config(bad)


def test_envelope_round_trip_and_garbage() -> None:
    header = envelope.Header("req", "echo", 7, 0, "a", "b", 123)
    frames = envelope.encode(header, {"k": b"\x00"}, (b"blob",))
    assert envelope.decode(frames) == (header, {"k": b"\x00"}, (b"blob",))
    for garbage, error in (
        ([b"CC/1", b"\xc1", b""], "^bad envelope: MessagePack data is malformed"),
        ([b"XX", b"", b""], "^not a CC/1 envelope$"),
        ([b"CC/1"], "^not a CC/1 envelope$"),
    ):
        with pytest.raises(ProtocolError, match=error):
            envelope.decode(garbage)
    datagram = envelope.encode_datagram(header, {"k": [1, "two"]})
    assert envelope.decode_datagram(datagram) == (header, {"k": [1, "two"]})
    for junk in (b"", b"\xc1", datagram[:-1], datagram + b"\x00", envelope.encode_value([1, 2]), b"\x92\x90\xc0"):
        with pytest.raises(ProtocolError, match=r"^bad datagram: "):
            envelope.decode_datagram(junk)


def test_secret_never_renders() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in f"{secret}"
    record = logging.LogRecord("x", logging.INFO, "", 0, "login %s", (secret,), None)
    assert "hunter2" not in JsonFormatter("sso").format(record)


class _Calc(ServiceNode):
    @handler("add")
    def add(self, msg: Incoming) -> int:
        return int(msg.body["a"]) + int(msg.body["b"])

    @handler("boom")
    def boom(self, _msg: Incoming) -> None:
        raise ActorError(ErrorCode.BAD_REQUEST, "no boom today")

    @handler("slow", blocking=True)
    def slow(self, msg: Incoming) -> str:
        import time

        time.sleep(float(msg.body))
        return "done"

    @handler("where", inline=True)
    def where(self, _msg: Incoming) -> bool:
        return self.ctx.in_bridge_thread()

    @handler("where-not")
    def where_not(self, _msg: Incoming) -> bool:
        return self.ctx.in_bridge_thread()


def test_service_node_in_fake_context() -> None:
    ctx = FakeContext("calc")
    ctx.run_node(_Calc)
    try:
        assert ctx.ask("add", {"a": 2, "b": 3}).unwrap() == 5
        err = ctx.ask("boom")
        assert not err.ok and err.code == ErrorCode.BAD_REQUEST and err.message == "no boom today"
        assert ctx.ask("nope").code == ErrorCode.UNKNOWN_TYPE
        import threading

        results: list[str] = []
        t = threading.Thread(target=lambda: results.append(ctx.ask("slow", 1.0).unwrap()))
        t.start()
        assert ctx.ask("add", {"a": 1, "b": 1}, timeout_s=0.5).unwrap() == 2, "a blocking handler must not block others"
        t.join()
        assert results == ["done"]
        assert ctx.ask("where").unwrap() is True, "an inline handler answers on the bridge thread"
        assert ctx.ask("where-not").unwrap() is False, "a plain handler answers on the actor thread"
    finally:
        ctx.close()


def test_a_handler_cannot_be_both_blocking_and_inline() -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        handler("x", blocking=True, inline=True)


def test_fork_server_fills_the_holes_of_the_heap() -> None:
    from concierge.supervisor import forkserver

    before = forkserver._pymalloc_free_blocks()
    assert len(before) == 32 and 16 in before and 512 in before  # CPython's pymalloc size classes
    forkserver._fill_pool_holes()
    after = forkserver._pymalloc_free_blocks()
    # what is left is the untouched tail of the pools the fillers opened (and the churn of the
    # loop's own temporaries): about a 16 KiB pool a size class, whatever was free before
    assert all(after[size] <= 2 * 16384 // size for size in after), (before, after)

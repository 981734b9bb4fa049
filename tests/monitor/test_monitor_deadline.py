"""DeadlineRunner: a hung call costs one timeout, its key fails fast until the call
returns, other keys keep working, and the number of stuck threads is bounded."""

from __future__ import annotations

import threading
import time

import pytest

from concierge.actors.monitor.deadline import DeadlineRunner, ProbeTimeout


def test_stuck_key_fails_fast_and_recovers() -> None:
    runner = DeadlineRunner(max_stuck=2)
    gate = threading.Event()
    try:
        with pytest.raises(ProbeTimeout, match="nfs"):
            runner.run("nfs", gate.wait, 0.2)
        assert runner.stuck_keys() == ["nfs"]
        calls: list[int] = []
        with pytest.raises(ProbeTimeout, match="still blocked"):
            runner.run("nfs", lambda: calls.append(1), 30)  # not even attempted
        assert calls == []
        assert runner.run("other", lambda: 42, 5) == 42
        gate.set()
        for _ in range(200):  # the stuck call returns on its own thread
            if not runner.stuck_keys():
                break
            threading.Event().wait(0.01)
        assert runner.run("nfs", lambda: "back", 5) == "back"
    finally:
        gate.set()
        runner.close()


def test_exceptions_propagate_and_stuck_threads_are_bounded() -> None:
    runner = DeadlineRunner(max_stuck=2)
    gate = threading.Event()
    try:
        with pytest.raises(ZeroDivisionError, match="division"):
            runner.run("div", lambda: 1 // 0, 5)
        for i in range(2):
            with pytest.raises(ProbeTimeout, match=f"hang{i}"):
                runner.run(f"hang{i}", gate.wait, 0.05)
        with pytest.raises(ProbeTimeout, match="too many blocked"):
            runner.run("one-more", lambda: 1, 5)
    finally:
        gate.set()
        runner.close()


def test_several_hung_keys_share_one_deadline() -> None:
    runner = DeadlineRunner()
    gate = threading.Event()
    try:
        started = time.monotonic()
        outcomes = runner.run_many(
            [("a", gate.wait), ("b", gate.wait), ("ok", lambda: "fine"), ("bad", lambda: 1 // 0)],
            1.0,
        )
        elapsed = time.monotonic() - started
        assert isinstance(outcomes[0], ProbeTimeout) and isinstance(outcomes[1], ProbeTimeout)
        assert outcomes[2] == "fine"
        assert isinstance(outcomes[3], ZeroDivisionError)
        assert sorted(runner.stuck_keys()) == ["a", "b"]
        assert elapsed < 1.9  # one deadline for both, not two (generous bound)
    finally:
        gate.set()
        runner.close()


def test_run_many_then_answers_from_the_probe_thread_or_at_the_deadline() -> None:
    """No thread waits: the set's last probe answers on its own thread; a hung one leaves the
    answer to the caller's timer, once, with the key quarantined; a refused key answers at once."""
    runner = DeadlineRunner()
    gate = threading.Event()
    timers: list[tuple[float, object]] = []

    class Timer:
        cancelled = False

        def cancel(self) -> None:
            self.cancelled = True

    def arm(delay: float, callback: object) -> Timer:
        timer = Timer()
        timers.append((delay, (callback, timer)))
        return timer

    try:
        done = threading.Event()
        got: list[tuple[list[object], str]] = []

        def on_done(outcomes: list[object]) -> None:
            got.append((outcomes, threading.current_thread().name))
            done.set()

        runner.run_many_then([("ok", lambda: "fine"), ("bad", lambda: 1 // 0)], 5.0, on_done, arm)
        assert done.wait(5)
        ((outcomes, thread),) = got
        assert outcomes[0] == "fine" and isinstance(outcomes[1], ZeroDivisionError)
        # answered by the probe thread, not a waiter (or by us, when both were done before we
        # could register: a fast probe on a fresh worker)
        assert thread.startswith("monitor-probe") or thread == threading.current_thread().name
        assert timers[0][0] == 5.0 and timers[0][1][1].cancelled  # type: ignore[index]

        got.clear()
        answered = threading.Event()

        def ok_probe() -> int:
            answered.set()
            return 1

        runner.run_many_then([("nfs", gate.wait), ("ok", ok_probe)], 0.5, on_done, arm)
        assert answered.wait(10)  # (a loaded machine may start the probe thread late)
        time.sleep(0.1)
        assert got == []  # the hung key holds the answer back ...
        fire = timers[-1][1][0]  # type: ignore[index]
        fire()  # ... until the deadline (the caller's timer)
        fire()  # a second firing answers nothing
        ((outcomes, _),) = got
        assert isinstance(outcomes[0], ProbeTimeout) and outcomes[1] == 1
        assert runner.stuck_keys() == ["nfs"]

        got.clear()
        runner.run_many_then([("nfs", gate.wait)], 0.5, on_done, arm)  # stuck: refused at once
        ((outcomes, thread),) = got
        assert isinstance(outcomes[0], ProbeTimeout) and thread == threading.current_thread().name
    finally:
        gate.set()
        runner.close()


def test_a_job_never_waits_behind_a_hung_probe_on_the_one_idle_worker() -> None:
    """Two jobs submitted back to back while one worker is idle: the second gets its own worker,
    even if the first hangs (the idle count was read before that worker woke, so both were
    handed to it and the second waited behind a probe that may never return)."""
    runner = DeadlineRunner()
    gate = threading.Event()
    try:
        assert runner.run_many([("warm", lambda: 1)], 5.0) == [1]  # leaves one idle worker
        time.sleep(0.05)
        answered = threading.Event()

        def ok_probe() -> int:
            answered.set()
            return 1

        for _ in range(5):  # the old accounting lost this race nearly every time
            answered.clear()
            outcomes = runner.run_many([("nfs", gate.wait), ("ok", ok_probe)], 0.5)
            assert answered.is_set() and outcomes[1] == 1, outcomes
            gate.set()  # release the hung probe so the next round starts from idle workers
            time.sleep(0.05)
            gate.clear()
    finally:
        gate.set()
        runner.close()

"""A guest-shutdown is durable until carried out or answered with an error (issue 15 item 7:
one of five did nothing on a loaded host). The ways found to lose one, each reproduced:

- the shutdown helper was killed at ``helper_timeout_s`` (a loaded guest's ``shutdown`` can
  take longer): qemu-ga waits for it however long it takes;
- a failing ``SetWallMessage`` (a courtesy) aborted the logind shutdown itself;
- a lifecycle process that died between receiving the request and carrying it out (the
  supervisor's watchdog after a long freeze on a loaded host) forgot it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from lifecycle_support import make_script, wait_for
from test_lifecycle_power import MANAGER, MockLogind, _node, logind  # noqa: F401 - fixture re-used

from concierge.actors.lifecycle import messages as m
from concierge.actors.lifecycle.power_journal import JOURNAL_NAME, PowerJournal, PowerRequest, boot_id
from concierge.testing.context import FakeContext


def _slow_recorder(bindir: Path, name: str, log: Path, sleep_s: float) -> None:
    make_script(bindir / name, f'sleep {sleep_s}\necho "{name} $*" >> {log}\n')


def test_slow_shutdown_helper_is_not_killed(tmp_path: Path) -> None:
    bindir, log = tmp_path / "bin", tmp_path / "calls.log"
    bindir.mkdir()
    _slow_recorder(bindir, "shutdown", log, sleep_s=2)
    ctx = _node({"power_backend": "binaries", "bin_path": str(bindir), "helper_timeout_s": 0.5})
    try:
        reply = ctx.ask(m.SHUTDOWN, {"mode": "powerdown"}, timeout_s=10)
        assert reply.ok, reply.message  # accepted: the helper is still working on it
        assert wait_for(lambda: log.exists() and log.read_text() != "", timeout_s=10.0)
        assert log.read_text().splitlines() == ["shutdown -h -P +0 hypervisor initiated shutdown"]
    finally:
        ctx.close()


@pytest.mark.peer
def test_failing_wall_message_does_not_cancel_the_shutdown(logind: MockLogind) -> None:  # noqa: F811
    failing = "raise dbus.exceptions.DBusException('busy', name='org.freedesktop.DBus.Error.NoReply')"
    logind._call("AddMethod", "sssss", MANAGER, "SetWallMessage", "sb", "", failing)
    ctx = _node({"power_backend": "logind", "dbus_address": logind.address})
    try:
        assert ctx.ask(m.SHUTDOWN, {"mode": "powerdown", "message": "bye"}).ok
        assert ("PowerOff", [False]) in logind.calls()
    finally:
        ctx.close()


def _node_with_state(state: Path, settings: dict[str, Any]) -> FakeContext:
    return _node({"state_dir": str(state), **settings})


def test_request_of_a_killed_run_is_carried_out_by_the_next(tmp_path: Path) -> None:
    bindir, log, state = tmp_path / "bin", tmp_path / "calls.log", tmp_path / "state"
    bindir.mkdir()
    make_script(bindir / "shutdown", f'echo "shutdown $*" >> {log}\n')
    # what a lifecycle killed after receiving guest-shutdown, before acting, leaves behind
    PowerJournal(state).record(PowerRequest("reboot", 0, "hypervisor initiated shutdown", time.time()))
    ctx = _node_with_state(state, {"power_backend": "binaries", "bin_path": str(bindir)})
    try:
        assert wait_for(log.exists, timeout_s=10.0)
        assert log.read_text().splitlines() == ["shutdown -h -r +0 hypervisor initiated shutdown"]
        assert wait_for(lambda: not (state / JOURNAL_NAME).exists(), timeout_s=5.0)
    finally:
        ctx.close()


@pytest.mark.parametrize("stale", ["other boot", "too old"])
def test_stale_request_is_never_carried_out(tmp_path: Path, stale: str) -> None:
    bindir, log, state = tmp_path / "bin", tmp_path / "calls.log", tmp_path / "state"
    bindir.mkdir()
    state.mkdir()
    make_script(bindir / "shutdown", f'echo "shutdown $*" >> {log}\n')
    record = {"mode": "powerdown", "delay_s": 0, "message": "", "at": time.time(), "boot_id": boot_id()}
    if stale == "other boot":
        record["boot_id"] = "00000000-0000-0000-0000-000000000000"
    else:
        record["at"] = time.time() - 3600
    (state / JOURNAL_NAME).write_text(json.dumps(record))
    ctx = _node_with_state(state, {"power_backend": "binaries", "bin_path": str(bindir)})
    try:
        assert wait_for(lambda: not (state / JOURNAL_NAME).exists(), timeout_s=5.0)
        assert not log.exists()
    finally:
        ctx.close()


def test_a_finished_request_leaves_nothing_pending(tmp_path: Path) -> None:
    bindir, log, state = tmp_path / "bin", tmp_path / "calls.log", tmp_path / "state"
    bindir.mkdir()
    make_script(bindir / "shutdown", f'echo "shutdown $*" >> {log}\nexit 1\n')
    ctx = _node_with_state(state, {"power_backend": "binaries", "bin_path": str(bindir)})
    try:
        reply = ctx.ask(m.SHUTDOWN, {"mode": "halt"})
        assert not reply.ok and reply.message == "child process has failed to shutdown"  # an answer, not a loss
        assert not (state / JOURNAL_NAME).exists()  # refused: a restart must not retry it
    finally:
        ctx.close()


def test_own_request_received_during_start_up_is_not_carried_out_twice(tmp_path: Path) -> None:
    """A dormant lifecycle is started by the guest-shutdown itself: the handler records the
    request while the start-up check for a predecessor's request may still run. That check must
    leave this run's own request to its handler (seen under load: ``shutdown`` ran twice)."""
    from concierge.actors.lifecycle.node import LifecycleNode

    bindir, log, state = tmp_path / "bin", tmp_path / "calls.log", tmp_path / "state"
    bindir.mkdir()
    make_script(bindir / "shutdown", f'echo "shutdown $*" >> {log}\n')
    ctx = _node_with_state(state, {"power_backend": "binaries", "bin_path": str(bindir)})
    try:
        node = ctx.node
        assert isinstance(node, LifecycleNode)
        assert node.recovered.wait(10)
        # the interleaving: our handler has recorded its request, then the start-up check runs
        node.power_journal.record(PowerRequest("powerdown", 0, "ours", time.time(), node._run))
        node._resume_power_request()
        assert not log.exists(), "this run's own request was carried out by the start-up check"
        # a predecessor's request (another run) is still resumed
        node.power_journal.record(PowerRequest("reboot", 0, "theirs", time.time(), "an-earlier-run"))
        node._resume_power_request()
        assert log.read_text().splitlines() == ["shutdown -h -r +0 theirs"]
    finally:
        ctx.close()

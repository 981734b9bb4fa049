"""Freeze / thaw on real loop-mounted ext4 and xfs images created by the test.

The freezable set is always restricted with ``only_mountpoints`` to the test's own mounts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from lifecycle_support import (
    loop_fs,
    make_script,
    not_frozen,
    start_writer,
    wait_for,
    writer_blocked,
    writer_finishes,
)

from concierge.actors.lifecycle import messages as m
from concierge.actors.lifecycle.node import LifecycleNode
from concierge.errors import ErrorCode
from concierge.testing.context import FakeContext

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def ext4() -> Iterator[Path]:
    with loop_fs("ext4") as mnt:
        yield mnt


@pytest.fixture(scope="module")
def xfs() -> Iterator[Path]:
    with loop_fs("xfs") as mnt:
        yield mnt


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Any]:
    contexts: list[FakeContext] = []

    def make(mounts: list[Path], **settings: Any) -> FakeContext:
        base: dict[str, Any] = {
            "only_mountpoints": [str(p) for p in mounts],
            "state_dir": str(tmp_path / "state"),
            "fsfreeze_hook": "",
            "freeze_lease_s": 30.0,
        }
        base.update(settings)
        ctx = FakeContext("lifecycle", base)
        ctx.run_node(LifecycleNode)
        node = ctx.node
        assert isinstance(node, LifecycleNode)
        assert node.recovered.wait(10)
        contexts.append(ctx)
        return ctx

    yield make
    for ctx in contexts:
        ctx.close()


def _thawed_reasons(ctx: FakeContext) -> list[str]:
    return [body["reason"] for topic, body in ctx.published if topic == m.EVT_THAWED]


def test_freeze_blocks_writes_until_thaw_on_ext4_and_xfs(make_node: Any, ext4: Path, xfs: Path, tmp_path: Path) -> None:
    ctx = make_node([ext4, xfs])
    assert ctx.ask(m.FREEZE_STATUS).unwrap() == "thawed"
    assert ctx.ask(m.FREEZE, {}).unwrap() == 2
    try:
        assert ctx.ask(m.FREEZE_STATUS).unwrap() == "frozen"
        assert (tmp_path / "state" / "frozen.json").exists()
        writers = [start_writer(ext4), start_writer(xfs)]
        assert all(writer_blocked(w) for w in writers)
        again = ctx.ask(m.FREEZE, {})
        assert not again.ok and again.code == ErrorCode.FROZEN
        trim = ctx.ask(m.FSTRIM, {})
        assert not trim.ok and trim.code == ErrorCode.FROZEN
    finally:
        assert ctx.ask(m.THAW, {}).unwrap() == 2
    assert all(writer_finishes(w) for w in writers)
    assert ctx.ask(m.FREEZE_STATUS).unwrap() == "thawed"
    assert not (tmp_path / "state" / "frozen.json").exists()
    frozen_evt = [b for t, b in ctx.published if t == m.EVT_FROZEN]
    assert frozen_evt[0]["count"] == 2
    assert sorted(frozen_evt[0]["mountpoints"]) == sorted([str(ext4), str(xfs)])
    assert _thawed_reasons(ctx) == ["request"]
    notes = [b for t, b in ctx.supervisor_notes if t == m.NOTE_FREEZE_STATE]
    assert notes == [{"frozen": True, "deadline_s": 30.0}, {"frozen": False, "deadline_s": 0.0}]
    # a thaw with nothing frozen thaws nothing (and touches nothing else)
    assert ctx.ask(m.THAW, {}).unwrap() == 0


def test_freeze_list_only_touches_listed_mounts(make_node: Any, ext4: Path, xfs: Path) -> None:
    ctx = make_node([ext4, xfs])
    reply = ctx.ask(m.FREEZE, {"mountpoints": [str(xfs), "/no/such/mount"]})
    assert reply.unwrap() == 1
    try:
        assert not_frozen(ext4)
        writer = start_writer(xfs)
        assert writer_blocked(writer)
    finally:
        assert ctx.ask(m.THAW, {}).unwrap() == 1
    assert writer_finishes(writer)
    # nothing listed that exists -> 0 frozen, state stays thawed (as qemu-ga)
    assert ctx.ask(m.FREEZE, {"mountpoints": ["/no/such/mount"]}).unwrap() == 0
    assert ctx.ask(m.FREEZE_STATUS).unwrap() == "thawed"


LEASE_S = 2.0


def test_lease_expiry_thaws(make_node: Any, ext4: Path) -> None:
    """Writes are blocked first, then the lease (not a request) thaws within 1.5x the lease.

    1.5x leaves a second of slack on a loaded machine and still fails a lease twice as long as
    configured; the lower bound fails a lease cut short.
    """
    ctx = make_node([ext4], freeze_lease_s=LEASE_S)
    before = time.monotonic()
    assert ctx.ask(m.FREEZE, {}).unwrap() == 1
    frozen_at = time.monotonic()
    writer = start_writer(ext4)
    assert writer_blocked(writer, settle_s=LEASE_S / 4)  # the freeze really blocks writes
    assert ctx.ask(m.FREEZE_STATUS).unwrap() == "frozen"
    assert writer_finishes(writer, timeout_s=LEASE_S * 1.5 - (time.monotonic() - frozen_at))
    thawed_after = time.monotonic() - before
    assert thawed_after >= LEASE_S * 0.95, f"thawed after {thawed_after:.2f} s, before the {LEASE_S} s lease"
    assert ctx.ask(m.FREEZE_STATUS).unwrap() == "thawed"
    assert _thawed_reasons(ctx) == ["lease"]
    notes = [b for t, b in ctx.supervisor_notes if t == m.NOTE_FREEZE_STATE]
    assert notes[0] == {"frozen": True, "deadline_s": LEASE_S}


def test_qga_channel_loss_thaws_but_other_protocols_do_not(make_node: Any, ext4: Path) -> None:
    grace = 1.0
    ctx = make_node([ext4], disconnect_grace_s=grace)
    assert ctx.ask(m.FREEZE, {}).unwrap() == 1
    ctx.tell("host.disconnected", {"channel": "spice0", "protocol": "spice"}, kind="evt")
    time.sleep(grace * 1.3)
    assert ctx.ask(m.FREEZE_STATUS).unwrap() == "frozen"
    lost = time.monotonic()
    ctx.tell("host.disconnected", {"channel": "qga0", "protocol": "qga"}, kind="evt")
    time.sleep(grace / 2)
    assert ctx.ask(m.FREEZE_STATUS).unwrap() == "frozen", "thawed before the grace period ended"
    # within 1.5x the grace: a grace twice as long as configured fails here
    assert wait_for(lambda: ctx.ask(m.FREEZE_STATUS).unwrap() == "thawed", grace * 1.5 - (time.monotonic() - lost))
    assert not_frozen(ext4)
    assert _thawed_reasons(ctx) == ["disconnect"]


def test_reconnect_within_grace_keeps_the_freeze(make_node: Any, ext4: Path) -> None:
    ctx = make_node([ext4], disconnect_grace_s=1.0)
    assert ctx.ask(m.FREEZE, {"channel": "qga0"}).unwrap() == 1
    try:
        ctx.tell("host.disconnected", {"channel": "qga0", "protocol": "qga"}, kind="evt")
        ctx.tell("host.connected", {"channel": "qga0", "protocol": "qga"}, kind="evt")
        time.sleep(1.5)
        assert ctx.ask(m.FREEZE_STATUS).unwrap() == "frozen"
    finally:
        assert ctx.ask(m.THAW, {}).unwrap() == 1


KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from concierge.testing.context import FakeContext
    from concierge.actors.lifecycle.node import LifecycleNode
    ctx = FakeContext("lifecycle", {"only_mountpoints": [sys.argv[1]], "state_dir": sys.argv[2],
                                    "fsfreeze_hook": "", "freeze_lease_s": 300.0})
    ctx.run_node(LifecycleNode)
    print(ctx.ask("lifecycle.freeze", {}).unwrap(), flush=True)
    time.sleep(300)
    """
)


def test_marker_of_a_killed_run_is_thawed_by_the_next_node(make_node: Any, ext4: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(ext4), str(tmp_path / "state")],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"1"
        writer = start_writer(ext4)
        assert writer_blocked(writer)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert (tmp_path / "state" / "frozen.json").exists()
    ctx = make_node([ext4])  # waits for recovery
    assert writer_finishes(writer)
    assert _thawed_reasons(ctx) == ["restart"]
    assert not (tmp_path / "state" / "frozen.json").exists()
    assert ctx.ask(m.FREEZE_STATUS).unwrap() == "thawed"


def test_failing_freeze_hook_runs_freezefail_and_leaves_nothing_frozen(
    make_node: Any, ext4: Path, tmp_path: Path
) -> None:
    log = tmp_path / "hook.log"
    hook = make_script(tmp_path / "hook", f'echo "$1" >> {log}\n[ "$1" = freeze ] && exit 7\nexit 0\n')
    ctx = make_node([ext4], fsfreeze_hook=str(hook))
    reply = ctx.ask(m.FREEZE, {})
    assert not reply.ok
    assert reply.message == "fsfreeze hook has failed with status 7"
    assert log.read_text().split() == ["freeze", "freezefail"]
    assert ctx.ask(m.FREEZE_STATUS).unwrap() == "thawed"
    assert not_frozen(ext4)


def test_hanging_hook_is_killed_and_freezefail_runs(make_node: Any, ext4: Path, tmp_path: Path) -> None:
    log = tmp_path / "hook.log"
    hook = make_script(tmp_path / "hook", f'echo "$1" >> {log}\n[ "$1" = freeze ] && exec sleep 120\nexit 0\n')
    ctx = make_node([ext4], fsfreeze_hook=str(hook), hook_timeout_s=1.0)
    reply = ctx.ask(m.FREEZE, {}, timeout_s=30)
    assert not reply.ok
    assert "timed out" in reply.message
    assert log.read_text().split() == ["freeze", "freezefail"]
    assert not_frozen(ext4)


def test_hook_dir_runs_in_order_and_skips_package_leftovers(make_node: Any, ext4: Path, tmp_path: Path) -> None:
    log = tmp_path / "hook.log"
    hook_d = tmp_path / "hook.d"
    hook_d.mkdir()
    make_script(hook_d / "10-db", f'echo "db $1" >> {log}\n')
    make_script(hook_d / "20-app", f'echo "app $1" >> {log}\n')
    make_script(hook_d / "30-app.dpkg-old", f'echo "never $1" >> {log}\n')
    ctx = make_node([ext4], hook_dir=str(hook_d))
    assert ctx.ask(m.FREEZE, {}).unwrap() == 1
    assert ctx.ask(m.THAW, {}).unwrap() == 1
    assert log.read_text().splitlines() == ["db freeze", "app freeze", "app thaw", "db thaw"]


def test_status_and_thaw_answer_while_a_freeze_hook_is_slow(make_node: Any, ext4: Path, tmp_path: Path) -> None:
    started = tmp_path / "started"
    hook = make_script(tmp_path / "hook", f'[ "$1" = freeze ] && touch {started} && exec sleep 120\nexit 0\n')
    ctx = make_node([ext4], fsfreeze_hook=str(hook), hook_timeout_s=100.0)
    outcome: Future[Any] = Future()
    threading.Thread(target=lambda: outcome.set_result(ctx.ask(m.FREEZE, {}, timeout_s=60)), daemon=True).start()
    assert wait_for(started.exists, 10.0)
    assert ctx.ask(m.FREEZE_STATUS, timeout_s=5).unwrap() == "thawed"
    assert ctx.ask(m.THAW, {}, timeout_s=10).unwrap() == 0
    freeze_reply = outcome.result(timeout=15)
    assert not freeze_reply.ok
    assert ctx.ask(m.FREEZE_STATUS).unwrap() == "thawed"
    assert not_frozen(ext4)


def test_stop_thaws(ext4: Path, tmp_path: Path) -> None:
    ctx = FakeContext(
        "lifecycle", {"only_mountpoints": [str(ext4)], "fsfreeze_hook": "", "state_dir": str(tmp_path / "state")}
    )
    ctx.run_node(LifecycleNode)
    assert ctx.ask(m.FREEZE, {}).unwrap() == 1
    ctx.close()
    assert not_frozen(ext4)
    assert _thawed_reasons(ctx) == ["stop"]


def test_fstrim_reports_per_path(make_node: Any, ext4: Path, xfs: Path) -> None:
    ctx = make_node([ext4, xfs])
    paths = ctx.ask(m.FSTRIM, {}).unwrap()["paths"]
    assert [p["path"] for p in paths] == [str(ext4), str(xfs)]
    for p in paths:
        assert set(p) == {"path", "trimmed", "minimum"} or set(p) == {"path", "error"}
    huge = ctx.ask(m.FSTRIM, {"minimum": 1 << 40}).unwrap()["paths"]
    ext4_result = next(p for p in huge if p["path"] == str(ext4))
    assert ext4_result.get("error") == "failed to trim: Invalid argument"


def test_bad_request_bodies_are_rejected(make_node: Any, ext4: Path) -> None:
    ctx = make_node([ext4])
    reply = ctx.ask(m.FREEZE, {"mountpoints": "not-a-list"})
    assert not reply.ok and reply.code == ErrorCode.BAD_REQUEST
    assert ctx.ask(m.FREEZE_STATUS).unwrap() == "thawed"


def test_fifreeze_failing_midway_thaws_what_was_frozen_then_freezefail(
    make_node: Any, ext4: Path, tmp_path: Path
) -> None:
    real = next(line for line in Path("/proc/self/mountinfo").read_text().splitlines() if f" {ext4} " in line)
    gone = tmp_path / "vanished"
    # the vanished mount comes first in mount order, so it is frozen last: after ext4
    table = tmp_path / "mountinfo"
    table.write_text(f"900 1 7:250 / {gone} rw - ext4 /dev/loop250 rw\n{real}\n")
    log = tmp_path / "hook.log"
    hook = make_script(tmp_path / "hook", f'echo "$1" >> {log}\n')
    ctx = make_node([ext4, gone], mount_table=str(table), fsfreeze_hook=str(hook))
    reply = ctx.ask(m.FREEZE, {})
    assert not reply.ok
    assert reply.message == f"failed to open {gone}: No such file or directory"
    assert log.read_text().split() == ["freeze", "freezefail"]
    assert ctx.ask(m.FREEZE_STATUS).unwrap() == "thawed"
    assert not_frozen(ext4)
    notes = [b["frozen"] for t, b in ctx.supervisor_notes if t == m.NOTE_FREEZE_STATE]
    assert notes == [True, False]
    assert not (tmp_path / "state" / "frozen.json").exists()

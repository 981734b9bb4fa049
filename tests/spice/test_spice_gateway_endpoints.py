"""Session gateway endpoints: lock contention between two gateways, and the /run/user scan."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from spice_gwclient import UID_A, Client, hello
from spice_testkit import wait_for

from concierge.actors.session.endpoints import lock_path, open_endpoint, run_user_uids
from concierge.actors.session.gateway import SessionGatewayNode
from concierge.testing.fdloop import PollingFakeContext


@pytest.fixture
def rundir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cc-gw-ep-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _gateway(rundir: Path, **settings: object) -> PollingFakeContext:
    table = {"users": [], "scan_run_user": False, "logind_bus": "", "poll_s": 0.1, **settings}
    ctx = PollingFakeContext("session", table, runtime_dir=rundir)
    ctx.run_node(SessionGatewayNode)
    return ctx


def test_spice_second_endpoint_for_a_uid_is_refused_and_the_first_keeps_its_socket(rundir: Path) -> None:
    first = open_endpoint(rundir, UID_A)
    try:
        with pytest.raises(BlockingIOError):
            open_endpoint(rundir, UID_A)  # another gateway instance: the lock says no
        st = os.stat(first.path, follow_symlinks=False)
        assert st.st_ino == first.sock_ino  # the live socket was not replaced
        assert [p.name for p in lock_path(rundir, UID_A).parent.iterdir()] == [f"{UID_A}.lock"]
    finally:
        first.close()
    assert not first.path.exists()


def test_spice_gateway_waits_for_a_held_lock_then_serves(rundir: Path) -> None:
    open_endpoint(rundir, UID_A).close()  # the lock file and directories exist from a last run
    holder = os.open(lock_path(rundir, UID_A), os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # e.g. a gateway that is still shutting down
    ctx = _gateway(rundir, users=[UID_A])
    try:
        for _ in range(3):  # several polls (0.1 s) retry and fail while the lock is held
            assert ctx.ask("session.status").unwrap()["endpoints"] == []
            time.sleep(0.15)
        os.close(holder)
        holder = -1
        wait_for(lambda: ctx.ask("session.status").unwrap()["endpoints"] == [UID_A])
        client = Client(rundir, UID_A, UID_A, "plain", hello())
        try:
            assert client.wait_frame("welcome")["uid"] == UID_A
        finally:
            client.stop()
    finally:
        if holder >= 0:
            os.close(holder)
        ctx.close()


def test_spice_run_user_scan_takes_real_directories_owned_by_their_uid(rundir: Path) -> None:
    run_user = rundir / "run-user"
    run_user.mkdir()
    (run_user / "60001").mkdir()
    os.chown(run_user / "60001", 60001, 60001)
    (run_user / "60002").mkdir()  # owned by root: not a login of uid 60002
    (run_user / "abc").mkdir()
    elsewhere = rundir / "elsewhere"
    elsewhere.mkdir()
    os.chown(elsewhere, 60003, 60003)
    (run_user / "60003").symlink_to(elsewhere)  # a symlink is never followed
    (run_user / "60004").touch()
    os.chown(run_user / "60004", 60004, 60004)  # a file, not a directory
    assert run_user_uids(str(run_user)) == {60001}
    assert run_user_uids(str(rundir / "missing")) == set()
    ctx = _gateway(rundir, scan_run_user=True, run_user_dir=str(run_user))
    try:
        assert ctx.ask("session.status").unwrap()["endpoints"] == [60001]
        (run_user / "60005").mkdir()
        os.chown(run_user / "60005", 60005, 60005)  # a new login: picked up by the next poll
        wait_for(lambda: ctx.ask("session.status").unwrap()["endpoints"] == [60001, 60005])
        st = (rundir / "users" / "60005").stat()
        assert (st.st_uid, st.st_mode & 0o777) == (60005, 0o700)
    finally:
        ctx.close()

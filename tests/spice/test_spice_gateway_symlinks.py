"""Session gateway: a real local user swapping names in their own directory for symlinks.

The per-uid directory belongs to its user, so root must never create, open, chown or chmod a
path inside it. The attacker is a real account (useradd) running under setpriv; the victims are
files in a root-owned directory that must come out untouched: not created, not chowned, not
chmodded, not truncated.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from spice_testkit import wait_for

from concierge.actors.session.endpoints import lock_path, open_endpoint
from concierge.actors.session.gateway import SessionGatewayNode
from concierge.testing.fdloop import PollingFakeContext
from concierge.testing.localuser import as_user, local_user

SWAPPER = Path(__file__).with_name("spice_symlink_swapper.py")
SWAP_ROUNDS = 300


@pytest.fixture
def user() -> Iterator[tuple[str, int, int]]:
    with local_user() as account:
        yield account


@pytest.fixture
def rundir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cc-gw-link-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def victims() -> Iterator[Path]:
    """A root-owned directory with one existing root file (0644) the attacker wants."""
    path = Path(tempfile.mkdtemp(prefix="cc-gw-victim-"))
    path.chmod(0o755)
    (path / "shadow").write_text("root secret\n")
    (path / "shadow").chmod(0o644)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _assert_untouched(victims: Path) -> None:
    assert sorted(p.name for p in victims.iterdir()) == ["shadow"], "root created a file outside"
    st = (victims / "shadow").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o644)
    assert (victims / "shadow").read_text() == "root secret\n"


def test_spice_planted_symlinks_are_not_followed(user: tuple[str, int, int], rundir: Path, victims: Path) -> None:
    _, uid, gid = user
    open_endpoint(rundir, uid, gid).close()  # the user's directory exists from an earlier run
    udir = rundir / "users" / str(uid)
    for name, target in (("session.sock.lock", "nologin"), ("session.sock", "shadow")):
        subprocess.run(as_user(uid, gid, "/bin/ln", "-sfn", str(victims / target), str(udir / name)), check=True)
    ctx = PollingFakeContext("session", {"users": [uid], "scan_run_user": False, "logind_bus": ""}, runtime_dir=rundir)
    try:
        ctx.run_node(SessionGatewayNode)
        assert ctx.ask("session.status").unwrap()["endpoints"] == [uid]
        st = os.stat(udir / "session.sock", follow_symlinks=False)
        assert (st.st_uid, st.st_mode & 0o777) == (uid, 0o600)
        assert lock_path(rundir, uid).stat().st_uid == 0
    finally:
        ctx.close()
    _assert_untouched(victims)


def test_spice_symlink_swap_race_while_endpoint_is_recreated(
    user: tuple[str, int, int], rundir: Path, victims: Path
) -> None:
    _, uid, gid = user
    open_endpoint(rundir, uid, gid).close()
    udir = rundir / "users" / str(uid)
    control = Path(tempfile.mkdtemp(prefix="cc-gw-ctl-"))
    control.chmod(0o777)
    stop, count = control / "stop", control / "count"
    targets = [str(victims / "shadow"), str(victims / "nologin"), str(victims)]
    argv = as_user(uid, gid, "/usr/bin/python3", str(SWAPPER), str(udir), str(stop), str(count), *targets)
    attacker = subprocess.Popen(argv)
    opened = 0
    try:
        wait_for((udir / "session.sock.lock").is_symlink)  # the attacker is running
        for _ in range(SWAP_ROUNDS):
            try:
                ep = open_endpoint(rundir, uid, gid)
            except OSError:
                continue  # e.g. the user made the name a directory: only their own endpoint fails
            opened += 1
            st = os.fstat(ep.dir_fd)
            assert (st.st_uid, st.st_mode & 0o777) == (uid, 0o700)
            ep.close()
    finally:
        stop.touch()
        attacker.wait(30)
    swaps = int(wait_for(lambda: count.exists() and count.read_text()))
    shutil.rmtree(control, ignore_errors=True)
    assert swaps > SWAP_ROUNDS // 3 and opened > SWAP_ROUNDS // 2, (swaps, opened)
    _assert_untouched(victims)
    assert [p.name for p in lock_path(rundir, uid).parent.iterdir()] == [f"{uid}.lock"]


def test_spice_user_blocking_their_socket_name_only_loses_their_own_endpoint(
    user: tuple[str, int, int], rundir: Path
) -> None:
    _, uid, gid = user
    open_endpoint(rundir, uid, gid).close()
    blocker = rundir / "users" / str(uid) / "session.sock"
    subprocess.run(as_user(uid, gid, "/bin/mkdir", str(blocker)), check=True)
    table = {"users": [uid, 60002], "scan_run_user": False, "logind_bus": "", "poll_s": 0.1}
    ctx = PollingFakeContext("session", table, runtime_dir=rundir)
    try:
        ctx.run_node(SessionGatewayNode)
        assert ctx.ask("session.status").unwrap()["endpoints"] == [60002]
        subprocess.run(as_user(uid, gid, "/bin/rmdir", str(blocker)), check=True)
        wait_for(lambda: ctx.ask("session.status").unwrap()["endpoints"] == sorted([60002, uid]))
    finally:
        ctx.close()

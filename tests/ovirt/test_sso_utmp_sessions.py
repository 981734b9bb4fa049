"""Sessions from utmp where there is no system bus / logind (issue 15 item 6): the sso actor
used to stay in back-off, so the oVirt channel never sent ``active-user`` and sso parked in
WAITING. The utmp files here are real ones (glibc's record layout) with live and dead pids."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from concierge.actors.sso.node import SsoNode
from concierge.actors.utmp import USER_PROCESS, pack_utmp
from concierge.errors import ErrorCode
from concierge.testing.polling_context import PollingFakeContext
from concierge.transport.ovirt import render

NO_BUS = "unix:path=/nonexistent/concierge-test/system_bus_socket"


def _wait(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return check()


@pytest.fixture
def utmp(tmp_path: Path) -> Path:
    path = tmp_path / "utmp"
    path.write_bytes(b"")
    return path


@pytest.fixture
def sso(utmp: Path, tmp_path: Path) -> Iterator[PollingFakeContext]:
    settings = {"system_bus": NO_BUS, "utmp_path": str(utmp), "utmp_poll_s": 0.1, "emit_signal": False}
    ctx = PollingFakeContext("sso", settings, runtime_dir=tmp_path)
    ctx.run_node(SsoNode)
    yield ctx
    ctx.close()


def _active(ctx: PollingFakeContext) -> str:
    reply = ctx.ask("sso.active_user")
    assert reply.ok, reply.message
    return str(render.active_user(reply.body)["name"])


def test_nobody_logged_in_is_reported_as_the_string_none(sso: PollingFakeContext) -> None:
    assert _active(sso) == "None"  # vdsm's literal for an empty console


def test_console_login_from_utmp_and_logoff(sso: PollingFakeContext, utmp: Path) -> None:
    me = os.getpid()  # a live process: a record of a dead one is a stale leftover
    utmp.write_bytes(
        pack_utmp("LOGIN", 1_795_640_001, ut_type=6, line="tty2", pid=me)  # a getty, not a session
        + pack_utmp("remote", 1_795_640_100, line="pts/3", pid=me, host="192.0.2.7")
        + pack_utmp("root", 1_795_640_200, 5, line="tty1", pid=me)
        + pack_utmp("ghost", 1_795_640_300, line="tty3", pid=2**22 + 1)  # pid beyond pid_max
    )
    assert _wait(lambda: _active(sso) == "root")
    assert ("session.logon", "root") in [(t, b["user"]) for t, b in sso.published]
    users = sso.ask("sso.users").body["users"]
    assert sorted(u["name"] for u in users) == ["remote", "root"]
    utmp.write_bytes(pack_utmp("remote", 1_795_640_100, line="pts/3", pid=me, host="192.0.2.7"))
    assert _wait(lambda: _active(sso) == "None")  # a remote login is nobody at the console
    assert ("session.logoff", "root") in [(t, b["user"]) for t, b in sso.published]
    assert USER_PROCESS == 7


def test_logind_only_actions_are_refused_not_hung(sso: PollingFakeContext, utmp: Path) -> None:
    utmp.write_bytes(pack_utmp("root", 1_795_640_200, line="tty1", pid=os.getpid()))
    assert _wait(lambda: _active(sso) == "root")
    for request in ("sso.lock", "sso.logoff"):
        reply = sso.ask(request)
        assert not reply.ok and reply.code == ErrorCode.UNAVAILABLE, (request, reply.message)

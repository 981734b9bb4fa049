"""The sso actor against python-dbusmock's logind on a private system bus."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ovirt_harness import LogindMock

from concierge.actors.sso.node import SsoNode
from concierge.errors import ErrorCode
from concierge.testing.polling_context import PollingFakeContext


def _wait(check: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met")


@pytest.fixture
def sso(system_bus: str, logind: LogindMock, tmp_path: Path) -> Iterator[PollingFakeContext]:
    ctx = PollingFakeContext(
        "sso",
        {"system_bus": system_bus, "graceful_logoff": [], "logoff_grace_s": 0.2},
        runtime_dir=tmp_path,
    )
    ctx.run_node(SsoNode)
    yield ctx
    ctx.close()


def _topics(ctx: PollingFakeContext) -> list[tuple[str, Any]]:
    return [(t, b["session"]) for t, b in ctx.published]


def test_session_events_and_active_user(sso: PollingFakeContext, logind: LogindMock) -> None:
    assert sso.ask("sso.active_user").body["name"] is None
    logind.add_session("c1", 1000, "alice")
    _wait(lambda: ("session.logon", "c1") in _topics(sso))
    assert sso.ask("sso.active_user").body == {
        "name": "alice",
        "uid": 1000,
        "session": "c1",
        "locked": False,
    }
    logind.set_locked("c1", True)
    _wait(lambda: ("session.lock", "c1") in _topics(sso))
    assert sso.ask("sso.active_user").body["locked"] is True
    logind.set_locked("c1", False)
    _wait(lambda: ("session.unlock", "c1") in _topics(sso))
    users = sso.ask("sso.users").body["users"]
    assert [(u["name"], u["uid"], u["sessions"]) for u in users] == [("alice", 1000, ["c1"])]
    logind.remove_session("c1")
    _wait(lambda: ("session.logoff", "c1") in _topics(sso))
    assert sso.ask("sso.active_user").body["name"] is None


def test_lock_targets_console_session_only(sso: PollingFakeContext, logind: LogindMock) -> None:
    logind.add_session("c2", 1001, "bob", active=False)
    logind.add_session("c1", 1000, "alice")
    _wait(lambda: sso.ask("sso.active_user").body["name"] == "alice")
    assert sso.ask("sso.lock").body == {"session": "c1"}
    assert len(logind.calls("/org/freedesktop/login1/session/c1", "Lock")) == 1
    assert logind.calls("/org/freedesktop/login1/session/c2", "Lock") == []


def test_logoff_terminates_console_session(sso: PollingFakeContext, logind: LogindMock) -> None:
    logind.add_session("c1", 1000, "alice")
    _wait(lambda: sso.ask("sso.active_user").body["name"] == "alice")
    assert sso.ask("sso.logoff").body == {"session": "c1", "graceful": False}
    calls = logind.calls("/org/freedesktop/login1", "TerminateSession")
    assert [[v[1] for v in c[1]] for c in calls] == [["c1"]]


def test_lock_without_console_user_is_not_found(sso: PollingFakeContext) -> None:
    reply = sso.ask("sso.lock")
    assert not reply.ok and reply.code == ErrorCode.NOT_FOUND


def test_unlock_of_another_users_session_refused(sso: PollingFakeContext, logind: LogindMock) -> None:
    logind.add_session("c1", 1000, "alice")
    logind.set_locked("c1", True)
    _wait(lambda: sso.ask("sso.active_user").body["locked"] is True)
    reply = sso.ask("sso.login", {"username": "mallory", "password": "x-pass-1"})
    assert not reply.ok and reply.code == ErrorCode.FORBIDDEN
    assert logind.calls("/org/freedesktop/login1", "UnlockSession") == []

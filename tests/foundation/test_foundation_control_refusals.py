"""The operator socket from outside: the admin-group mode with real users, and malformed requests.

Users and the group are real (``groupadd``/``useradd`` in the test, removed after); the probe
runs under ``setpriv`` with exactly the credentials a login would give. Malformed requests are
written raw to the ROUTER socket, as a buggy or hostile client would.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from concierge.testing.harness import AgentHarness, catalog
from concierge.testing.peers import require, require_binary

ECHO = {"entry": "concierge.testing.nodes:EchoNode"}
FAST = "[supervisor]\nbackoff_base_s = 0.05\n[agent]\nheartbeat_interval_s = 0.2\n"
PROBE = (
    "import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
    "try:\n s.connect(sys.argv[1])\nexcept PermissionError:\n sys.exit(13)\nprint('connected')\n"
)


@pytest.fixture
def world_root() -> Iterator[Path]:
    """A runtime root other users may traverse (tmp_path's parents may be private)."""
    root = Path(tempfile.mkdtemp(prefix="ccctl-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def admins() -> Iterator[tuple[str, str, str]]:
    """(group, member, outsider): a real group with one member and one user outside it."""
    require(os.geteuid() == 0, "needs root to add users and a group")
    groupadd = require_binary("groupadd", "passwd")
    useradd = require_binary("useradd", "passwd")
    userdel = require_binary("userdel", "passwd")
    groupdel = require_binary("groupdel", "passwd")
    tag = uuid.uuid4().hex[:6]
    group, member, outsider = f"ccadm{tag}", f"ccmem{tag}", f"ccout{tag}"
    subprocess.run([groupadd, group], check=True)
    subprocess.run([useradd, "-M", "-N", "-G", group, member], check=True)
    subprocess.run([useradd, "-M", "-N", outsider], check=True)
    try:
        yield group, member, outsider
    finally:
        for user in (member, outsider):
            subprocess.run([userdel, user], check=False)
        subprocess.run([groupdel, group], check=False)


def _probe_as(user: str, ctl: Path) -> int:
    setpriv = require_binary("setpriv", "util-linux")
    return subprocess.run(
        [setpriv, f"--ruid={user}", f"--euid={user}", "--init-groups", "/usr/bin/python3", "-c", PROBE, str(ctl)],
        check=False,
        cwd="/",
        capture_output=True,
    ).returncode


def _start(root: Path, extra: str = "") -> AgentHarness:
    agent = AgentHarness(root, catalog({"one": ECHO}, extra=FAST + extra), args=("--log-format", "text"))
    agent.start()
    return agent


def test_admin_group_members_reach_the_socket_and_others_do_not(world_root: Path, admins: tuple[str, str, str]) -> None:
    group, member, outsider = admins
    agent = _start(world_root, f'admin_group = "{group}"\n')
    try:
        ctl = agent.runtime_dir / "ctl.ipc"
        st = ctl.stat()
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o660, 0, grp.getgrnam(group).gr_gid)
        assert _probe_as(member, ctl) == 0, "a member of the admin group must reach the socket"
        assert _probe_as(outsider, ctl) == 13, "a user outside the admin group must not"
    finally:
        agent.stop()


def test_unknown_admin_group_keeps_the_socket_root_only(world_root: Path, admins: tuple[str, str, str]) -> None:
    _, member, _ = admins
    agent = _start(world_root, 'admin_group = "no-such-group-cc"\n')
    try:
        ctl = agent.runtime_dir / "ctl.ipc"
        assert ctl.stat().st_mode & 0o777 == 0o600
        assert _probe_as(member, ctl) == 13
        assert "admin group no-such-group-cc not usable" in agent.log_tail(200)
    finally:
        agent.stop()


def _raw(agent: AgentHarness, *frames: bytes) -> dict[str, Any]:
    zctx = zmq.Context.instance()
    sock = zctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    try:
        sock.connect(f"ipc://{agent.runtime_dir / 'ctl.ipc'}")
        sock.send_multipart(list(frames))
        return dict(json.loads(sock.recv_multipart()[-1]))
    finally:
        sock.close()


MALFORMED = [
    (b"not json", r"^bad request: Expecting value"),
    (b"[1, 2]", r"^bad request: 'list' object has no attribute 'get'$"),
    (b'{"v": 1, "id": 5}', r"^bad request: 'cmd'$"),
    (b'{"v": 1, "id": "five", "cmd": "status"}', r"^bad request: invalid literal for int\(\)"),
    (b'{"v": 1, "id": 6, "cmd": "status", "args": [1]}', r"^bad request: args must be an object$"),
    (b"\xff\xfe", r"^bad request: "),
]


def test_malformed_operator_requests_get_bad_request_and_the_agent_lives_on(agent_factory: Any) -> None:
    import re

    agent = agent_factory({"one": ECHO}, extra=FAST)
    agent.start()
    for payload, message in MALFORMED:
        reply = _raw(agent, payload)
        assert reply["ok"] is False and reply["id"] == 0, (payload, reply)
        assert reply["error"]["code"] == "BAD_REQUEST", (payload, reply)
        assert re.search(message, reply["error"]["message"]), (payload, reply)
    unknown = _raw(agent, b'{"v": 1, "id": 7, "cmd": "format-disk", "args": {}}')
    assert unknown == {
        "v": 1,
        "id": 7,
        "ok": False,
        "error": {"code": "NOT_FOUND", "message": "unknown command 'format-disk'"},
    }
    missing = _raw(agent, b'{"v": 1, "id": 8, "cmd": "restart", "args": {"actors": ["one", "ghost"]}}')
    assert missing["error"] == {"code": "BAD_REQUEST", "message": "no such actor: ghost"}
    assert missing["id"] == 8
    empty = _raw(agent, b"", b'{"v": 1, "id": 9, "cmd": "version"}')  # REQ-style empty delimiter
    assert empty["ok"] is True and empty["id"] == 9
    assert agent.status()["actors"][0]["state"] == "RUNNING"

"""Single sign-on end to end with real PAM (pam_wrapper + pam_python), real D-Bus and sockets.

A ``login`` line from a vdsm-faithful host goes through the oVirt front-end to the sso actor,
whose token signal is caught on the bus by a fake greeter running the gdm-ovirtcred-like stack
(our PAM module, then a verifier of PAM_USER/PAM_AUTHTOK). Also expiry, replay, wrong token,
wrong peer, replacement, agent-side unlock through PAM, and attacks on the credential socket.
"""

from __future__ import annotations

import json
import logging
import os
import pty
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ovirt_harness import (
    PAM_MATRIX,
    PAM_PYTHON,
    PAM_WRAPPER,
    SYS_PYTHON,
    FakePeers,
    HostPump,
    LogindMock,
    require_pam_stack,
)

from concierge.actors.sso import credsock
from concierge.actors.sso.node import SsoNode
from concierge.errors import UnavailableError
from concierge.testing.context import FakeContext
from concierge.testing.fd_link import FrontEndHostNode
from concierge.testing.peers import require_root
from concierge.testing.polling_context import PollingFakeContext

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent / "src"
MODULE = SRC / "concierge/actors/sso/pam/pam_concierge_sso.py"
PASSWORD = "Sso-t3st-Pa55word"
OTHER_PASSWORD = "Sso-0ther-Pa55word"


class Greeter:
    """Listens for UserAuthenticated like GNOME Shell and runs the PAM stack with the token."""

    def __init__(self, bus: str, tmp: Path) -> None:
        from jeepney import MatchRule, message_bus
        from jeepney.io.threading import DBusRouter, open_dbus_connection

        self.conn = open_dbus_connection(bus)
        self.router = DBusRouter(self.conn)
        self.tokens: queue.Queue[str] = queue.Queue()
        rule = MatchRule(type="signal", interface="org.ovirt.vdsm.Credentials", member="UserAuthenticated")
        self.handle = self.router.filter(rule, queue=self.tokens, bufsize=100)
        self.router.send_and_get_reply(message_bus.AddMatch(rule), timeout=5)
        self.pam_dir = tmp / "pam.d"
        self.pam_dir.mkdir()
        (self.pam_dir / "other").write_text("auth required pam_deny.so\n")
        self.passdb = tmp / "passdb"
        self.passdb.write_text(f"alice:{PASSWORD}\n")
        self.sock = tmp / "run" / "sso" / "cred.sock"
        self.write_service("ovsso", server_uid=0)

    def write_service(self, name: str, server_uid: int) -> None:
        (self.pam_dir / name).write_text(
            f"auth requisite {PAM_PYTHON} {MODULE} socket={self.sock} server_uid={server_uid}\n"
            f"auth required {PAM_PYTHON} {HERE / 'pam_sso_verifier.py'} passdb={self.passdb}\n"
        )

    def token(self, timeout: float = 10.0) -> str:
        msg: Any = self.tokens.get(timeout=timeout)
        return str(msg.body[0])

    def authenticate(self, token: str, user: str = "-", service: str = "ovsso") -> dict[str, Any]:
        env = dict(
            os.environ,
            LD_PRELOAD=PAM_WRAPPER,
            PAM_WRAPPER="1",
            PAM_WRAPPER_SERVICE_DIR=str(self.pam_dir),
        )
        out = subprocess.run(
            [SYS_PYTHON, str(HERE / "sso_greeter.py"), service, user, token],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert PASSWORD not in out.stdout + out.stderr
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    def close(self) -> None:
        self.handle.close()
        self.router.close()
        self.conn.close()


@pytest.fixture
def greeter(system_bus: str, tmp_path: Path) -> Iterator[Greeter]:
    require_pam_stack()
    g = Greeter(system_bus, tmp_path)
    yield g
    g.close()


@pytest.fixture
def start_sso(system_bus: str, logind: LogindMock, tmp_path: Path) -> Iterator[Callable[..., PollingFakeContext]]:
    started: list[PollingFakeContext] = []

    def start(**settings: Any) -> PollingFakeContext:
        conf = {"system_bus": system_bus, "graceful_logoff": [], **settings}
        (tmp_path / "run").mkdir(exist_ok=True)
        ctx = PollingFakeContext("sso", conf, runtime_dir=tmp_path / "run")
        started.append(ctx)
        ctx.run_node(SsoNode)
        return ctx

    yield start
    for ctx in started:
        ctx.close()


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert PASSWORD not in caplog.text and OTHER_PASSWORD not in caplog.text


def _login(ctx: PollingFakeContext, password: str = PASSWORD, user: str = "alice") -> Any:
    reply = ctx.ask("sso.login", {"username": user, "password": password})
    assert reply.ok, reply.message
    return reply.body


def test_login_line_to_successful_pam_authentication(
    greeter: Greeter, start_sso: Callable[..., PollingFakeContext], caplog: pytest.LogCaptureFixture
) -> None:
    sso = start_sso()
    host_fd, guest_fd = pty.openpty()
    tty.setraw(host_fd)
    tty.setraw(guest_fd)
    pump = HostPump(host_fd)
    peers = FakePeers()
    fe = FakeContext(
        "transport",
        {
            "frontend": "concierge.transport.ovirt:OvirtFrontEnd",
            "fd": guest_fd,
            "stale_window_s": 0.0,
        },
        peers={"monitor": peers.monitor, "sso": sso, "lifecycle": peers.lifecycle},
    )
    try:
        fe.run_node(FrontEndHostNode)
        pump.send("login", username="alice", password=PASSWORD)
        token = greeter.token()
        assert len(token) >= 32
        assert token not in caplog.text
        assert greeter.authenticate(token) == {"ok": True}
        assert greeter.authenticate(token)["ok"] is False  # single use: a replay fails
    finally:
        fe.close()
        pump.close()
        os.close(host_fd)
        os.close(guest_fd)


def test_expired_credential_refused(greeter: Greeter, start_sso: Callable[..., PollingFakeContext]) -> None:
    sso = start_sso(credential_ttl_s=0.3)
    _login(sso)
    token = greeter.token()
    time.sleep(1.5)
    assert greeter.authenticate(token)["ok"] is False


def test_wrong_token_does_not_burn_the_credential(
    greeter: Greeter, start_sso: Callable[..., PollingFakeContext]
) -> None:
    sso = start_sso()
    _login(sso)
    token = greeter.token()
    assert greeter.authenticate("123456")["ok"] is False
    assert greeter.authenticate(token) == {"ok": True}


def test_second_login_replaces_first(greeter: Greeter, start_sso: Callable[..., PollingFakeContext]) -> None:
    sso = start_sso()
    _login(sso, OTHER_PASSWORD)
    first = greeter.token()
    _login(sso, PASSWORD)
    second = greeter.token()
    assert greeter.authenticate(first)["ok"] is False
    assert greeter.authenticate(second) == {"ok": True}


def test_preset_user_mismatch_refused(greeter: Greeter, start_sso: Callable[..., PollingFakeContext]) -> None:
    sso = start_sso()
    _login(sso)
    token = greeter.token()
    assert greeter.authenticate(token, user="bob")["ok"] is False  # bob's lock screen


def test_wrong_peer_both_directions(greeter: Greeter, start_sso: Callable[..., PollingFakeContext]) -> None:
    sso = start_sso(allowed_peer_uids=[4242])  # root clients are not allowed here
    _login(sso)
    token = greeter.token()
    assert greeter.authenticate(token)["ok"] is False
    assert sso.counters["sso.peer_refused"] == 1
    greeter.write_service("ovsso-other-server", server_uid=4242)  # client expects another server uid
    sso.close()
    sso2 = start_sso()
    _login(sso2)
    token2 = greeter.token()
    assert greeter.authenticate(token2, service="ovsso-other-server")["ok"] is False
    assert greeter.authenticate(token2) == {"ok": True}  # the refused attempts consumed nothing


def _as_nobody_fetch(path: Path, token: str) -> str:
    code = (
        "import socket,sys,struct;s=socket.socket(socket.AF_UNIX);"
        "s.settimeout(3)\n"
        "try:\n s.connect(sys.argv[1])\n"
        "except OSError as e:\n print('connect:'+type(e).__name__);sys.exit()\n"
        "try:\n s.sendall(b'CCSSO'+struct.pack('>BI',1,len(sys.argv[2]))+sys.argv[2].encode())\n"
        "except OSError:\n pass\n"
        "d=s.recv(64);print('status:%d'%d[6] if len(d)>6 else 'closed')"
    )
    out = subprocess.run(
        [SYS_PYTHON, "-c", code, str(path), token],
        user=65534,
        group=65534,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return out.stdout.strip() or out.stderr.strip()


def test_other_local_uid_cannot_reach_or_use_socket(
    greeter: Greeter, start_sso: Callable[..., PollingFakeContext]
) -> None:
    require_root("to run a client as another uid")
    base = Path(tempfile.mkdtemp(prefix="sso-attack-"))
    os.chmod(base, 0o711)  # noqa: S103 - reachable by others down to our socket directory
    try:
        sso = start_sso(socket_dir=str(base / "sso"))
        _login(sso)
        token = greeter.token()  # anyone on the bus can read the broadcast token ...
        path = base / "sso" / credsock.SOCKET_NAME
        assert _as_nobody_fetch(path, token) == "connect:PermissionError"  # ... but the dir is 0700
        sso.close()
        wide = start_sso(socket_dir=str(base / "sso"), socket_mode=0o666)
        _login(wide)
        token = greeter.token()  # socket open to all: SO_PEERCRED still refuses uid 65534
        assert _as_nobody_fetch(path, token) == f"status:{credsock.FORBIDDEN}"
        assert wide.counters["sso.peer_refused"] == 1
        wide.close()
        assert not path.exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_squatted_socket_dir_or_path_refused(tmp_path: Path, start_sso: Callable[..., PollingFakeContext]) -> None:
    require_root("to create a directory owned by another uid")
    squat = tmp_path / "squat"
    squat.mkdir()
    os.chown(squat, 65534, 65534)
    with pytest.raises(UnavailableError, match="owned by uid 65534"):
        start_sso(socket_dir=str(squat))
    fake = tmp_path / "fake"
    fake.mkdir(mode=0o700)
    (fake / credsock.SOCKET_NAME).write_text("not a socket")
    with pytest.raises(UnavailableError, match="not our socket"):
        start_sso(socket_dir=str(fake))


def test_racing_clients_get_the_credential_once(greeter: Greeter, start_sso: Callable[..., PollingFakeContext]) -> None:
    sso = start_sso()
    _login(sso)
    token = greeter.token().encode()
    results: list[int] = []
    lock = threading.Lock()

    def grab() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(greeter.sock))
            s.sendall(credsock.build_request(token))
            data = s.recv(4096)
        with lock:
            results.append(data[6])

    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # connects, never speaks
    silent.connect(str(greeter.sock))
    threads = [threading.Thread(target=grab) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == [credsock.OK] + [credsock.NOT_FOUND] * 11
    silent.settimeout(10)
    assert silent.recv(16) == b""  # dropped after client_timeout_s, having blocked nobody
    silent.close()


def _run_node_login(job: dict[str, Any], pam_dir: Path) -> dict[str, Any]:
    env = dict(
        os.environ,
        LD_PRELOAD=PAM_WRAPPER,
        PAM_WRAPPER="1",
        PAM_WRAPPER_SERVICE_DIR=str(pam_dir),
        PYTHONPATH=str(SRC),
    )
    out = subprocess.run(
        [sys.executable, str(HERE / "sso_node_driver.py")],
        input=json.dumps(job) + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert PASSWORD not in out.stderr and OTHER_PASSWORD not in out.stderr
    assert out.stdout.strip(), out.stderr[-2000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_agent_side_unlock_through_pam(system_bus: str, logind: LogindMock, tmp_path: Path) -> None:
    require_pam_stack()
    pam_dir = tmp_path / "pam.d"
    pam_dir.mkdir()
    (pam_dir / "other").write_text("auth required pam_deny.so\n")
    passdb = tmp_path / "passdb"
    passdb.write_text(f"alice:{PASSWORD}:ovverify\n")
    (pam_dir / "ovverify").write_text(
        f"auth required {PAM_MATRIX} passdb={passdb}\naccount required {PAM_MATRIX} passdb={passdb}\n"
    )
    (tmp_path / "run").mkdir()
    logind.add_session("c1", 1000, "alice")
    logind.set_locked("c1", True)
    job = {
        "settings": {
            "system_bus": system_bus,
            "pam_verify_service": "ovverify",
            "graceful_logoff": [],
        },
        "runtime_dir": str(tmp_path / "run"),
        "wait_locked": True,
        "username": "alice",
    }
    wrong = _run_node_login({**job, "password": OTHER_PASSWORD}, pam_dir)
    assert wrong["ok"] is False and wrong["code"] == "FORBIDDEN"
    assert logind.calls("/org/freedesktop/login1", "UnlockSession") == []
    other_user = _run_node_login({**job, "username": "bob", "password": PASSWORD}, pam_dir)
    assert other_user["ok"] is False and other_user["code"] == "FORBIDDEN"
    good = _run_node_login({**job, "password": PASSWORD}, pam_dir)
    assert good == {"ok": True, "body": {"action": "unlocked"}, "code": "", "message": ""}
    calls = logind.calls("/org/freedesktop/login1", "UnlockSession")
    assert [[v[1] for v in c[1]] for c in calls] == [["c1"]]

"""Every refusal of the credential socket and the vault, driven from outside over real sockets.

The sso actor runs with a real private system bus and the logind mock; its token is caught off
the bus as a greeter would, and requests are written to the real ``cred.sock``. Each refusal is
checked by its status byte *and* by its side effect: a refused request must not burn the parked
credential, and an expired one must be gone for good. The clock is the test's: the vault's
expiry is then exercised inside ``take()`` itself, before the actor's periodic sweep could run.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ovirt_harness import LogindMock

from concierge.actors.sso.node import SsoNode
from concierge.actors.sso.vault import CredentialVault
from concierge.errors import UnavailableError
from concierge.logs import Secret
from concierge.testing.peers import require_binary, require_root
from concierge.testing.polling_context import PollingFakeContext

PASSWORD = "Cr3dsock-refusal-pw"
OK, NOT_FOUND, FORBIDDEN, BAD_REQUEST = 0, 1, 2, 3  # the documented wire statuses, as literals


class ManualClock:
    """Monotonic time that moves only when the test says (the actor's timers wait with it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Tokens:
    """Catches ``UserAuthenticated`` off the bus, as GNOME Shell's greeter does."""

    def __init__(self, bus: str) -> None:
        from jeepney import MatchRule, message_bus
        from jeepney.io.threading import DBusRouter, open_dbus_connection

        self.conn = open_dbus_connection(bus)
        self.router = DBusRouter(self.conn)
        self.queue: queue.Queue[Any] = queue.Queue()
        rule = MatchRule(type="signal", interface="org.ovirt.vdsm.Credentials", member="UserAuthenticated")
        self.handle = self.router.filter(rule, queue=self.queue, bufsize=10)
        self.router.send_and_get_reply(message_bus.AddMatch(rule), timeout=5)

    def next(self) -> bytes:
        return str(self.queue.get(timeout=10).body[0]).encode()

    def close(self) -> None:
        self.handle.close()
        self.router.close()
        self.conn.close()


@pytest.fixture
def tokens(system_bus: str) -> Iterator[Tokens]:
    t = Tokens(system_bus)
    yield t
    t.close()


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory other uids may traverse (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="cc-credsock-"))
    base.chmod(0o711)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def start_sso(system_bus: str, logind: LogindMock, tmp_path: Path) -> Iterator[Callable[..., PollingFakeContext]]:
    started: list[PollingFakeContext] = []

    def start(clock: ManualClock | None = None, **settings: Any) -> PollingFakeContext:
        conf = {
            "system_bus": system_bus,
            "graceful_logoff": [],
            "allowed_peer_uids": [os.geteuid()],
            "socket_dir": str(tmp_path / "sso"),
            **settings,
        }
        ctx = PollingFakeContext("sso", conf, runtime_dir=tmp_path, clock=clock)
        started.append(ctx)
        ctx.run_node(SsoNode)
        return ctx

    yield start
    for ctx in started:
        ctx.close()


def _park(sso: PollingFakeContext, tokens: Tokens) -> bytes:
    reply = sso.ask("sso.login", {"username": "alice", "password": PASSWORD})
    assert reply.ok and reply.body == {"action": "greeter"}, reply.message
    return tokens.next()


def _exchange(path: Path, request: bytes) -> tuple[int, bytes, bytes]:
    """Send raw bytes, read the whole reply; (status, user, password)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(request)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data[:6] == b"CCSSO\x01", data[:6]
    status = data[6]
    (ulen,) = struct.unpack(">I", data[7:11])
    user = data[11 : 11 + ulen]
    (plen,) = struct.unpack(">I", data[11 + ulen : 15 + ulen])
    return status, user, data[15 + ulen : 15 + ulen + plen]


def _request(token: bytes, *, magic: bytes = b"CCSSO", version: int = 1, length: int | None = None) -> bytes:
    return magic + struct.pack(">BI", version, len(token) if length is None else length) + token


def test_symlinked_socket_dir_is_refused(tmp_path: Path, start_sso: Callable[..., PollingFakeContext]) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(UnavailableError, match=rf"^credential socket dir {link} is not a directory\b"):
        start_sso(socket_dir=str(link))
    assert list(real.iterdir()) == []  # nothing was created through the link


def test_non_directory_socket_dir_is_refused(tmp_path: Path, start_sso: Callable[..., PollingFakeContext]) -> None:
    plain = tmp_path / "plain"
    plain.write_text("a file where the directory should be")
    with pytest.raises(UnavailableError, match=rf"^credential socket dir {plain} is not a directory\b"):
        start_sso(socket_dir=str(plain))


def test_loose_socket_dir_mode_is_tightened(tmp_path: Path, start_sso: Callable[..., PollingFakeContext]) -> None:
    loose = tmp_path / "sso"
    loose.mkdir(mode=0o777)
    loose.chmod(0o777)
    start_sso()
    assert loose.stat().st_mode & 0o7777 == 0o700
    assert (loose / "cred.sock").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "request_bytes",
    [
        _request(b"x" * 8, magic=b"XXSSO"),
        _request(b"x" * 8, magic=b"ccsso"),
        _request(b"x" * 8, version=0),
        _request(b"x" * 8, version=2),
        _request(b"", length=257),  # refused from the length alone: the body never comes
        _request(b"", length=0xFFFFFFFF),
    ],
    ids=["bad-magic", "lowercase-magic", "version-0", "version-2", "token-257", "token-4g"],
)
def test_malformed_requests_are_bad_requests_and_burn_nothing(
    request_bytes: bytes, tmp_path: Path, tokens: Tokens, start_sso: Callable[..., PollingFakeContext]
) -> None:
    sso = start_sso()
    token = _park(sso, tokens)
    path = tmp_path / "sso" / "cred.sock"
    assert _exchange(path, request_bytes) == (BAD_REQUEST, b"", b"")
    assert _exchange(path, _request(token)) == (OK, b"alice", PASSWORD.encode())


def test_token_of_256_bytes_is_read_and_looked_up(
    tmp_path: Path, tokens: Tokens, start_sso: Callable[..., PollingFakeContext]
) -> None:
    sso = start_sso()
    token = _park(sso, tokens)
    path = tmp_path / "sso" / "cred.sock"
    # the largest allowed length is a lookup (unknown token), not a malformed request
    assert _exchange(path, _request(b"t" * 256)) == (NOT_FOUND, b"", b"")
    assert sso.counters["sso.token_refused"] == 1
    assert _exchange(path, _request(token)) == (OK, b"alice", PASSWORD.encode())
    assert _exchange(path, _request(token)) == (NOT_FOUND, b"", b"")  # single use


def test_expiry_is_enforced_inside_take(
    tmp_path: Path, tokens: Tokens, start_sso: Callable[..., PollingFakeContext]
) -> None:
    """The sweep runs every second; with the clock held below that, only take() can expire.

    A TTL of 0.5 s: at exactly the deadline the token is refused and the credential wiped (a
    fresh login's token at deadline - 1 ms still works, so the bound is the deadline itself).
    """
    clock = ManualClock()
    start = clock.now
    sso = start_sso(clock=clock, credential_ttl_s=0.5)
    path = tmp_path / "sso" / "cred.sock"
    token = _park(sso, tokens)
    clock.now = start + 0.499
    assert _exchange(path, _request(token)) == (OK, b"alice", PASSWORD.encode())
    clock.now = start
    token = _park(sso, tokens)
    clock.now = start + 0.5
    assert _exchange(path, _request(token)) == (NOT_FOUND, b"", b"")
    clock.now = start + 0.1  # even if time went back, the expired credential is gone
    assert _exchange(path, _request(token)) == (NOT_FOUND, b"", b"")
    assert sso.counters["sso.token_refused"] == 2


def test_unused_credential_is_swept_at_its_deadline_and_only_then(
    tmp_path: Path, tokens: Tokens, start_sso: Callable[..., PollingFakeContext], caplog: pytest.LogCaptureFixture
) -> None:
    """The actor's once-a-second sweep drops an expired credential, and reports nothing else.

    With a TTL of exactly one sweep period the deadline and the first sweep coincide: ``>=``
    must sweep it then. The second sweep finds nothing and must stay silent.
    """
    caplog.set_level(logging.INFO, logger="concierge.actors.sso.node")
    clock = ManualClock()
    start = clock.now
    sso = start_sso(clock=clock, credential_ttl_s=1.0)
    path = tmp_path / "sso" / "cred.sock"
    token = _park(sso, tokens)
    assert len(token) == 32 and re.fullmatch(rb"[A-Za-z0-9_-]{32}", token)  # 192 random bits

    def sweeps() -> int:
        return sum(r.getMessage() == "parked SSO credential expired unused" for r in caplog.records)

    clock.now = start + 1.0
    deadline = time.monotonic() + 5
    while sweeps() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sweeps() == 1
    clock.now = start + 2.0  # the next sweep: nothing is parked any more
    time.sleep(1.5)
    assert sweeps() == 1
    clock.now = start + 1.5  # even back before the deadline, the swept credential is gone
    assert _exchange(path, _request(token)) == (NOT_FOUND, b"", b"")
    fresh = _park(sso, tokens)  # and the actor is still serving
    assert _exchange(path, _request(fresh)) == (OK, b"alice", PASSWORD.encode())


def test_vault_wipes_the_password_bytes_on_take_replace_expiry_and_clear() -> None:
    """The parked password lives in one bytearray; every way out of the vault zeroes it.

    Reading the private buffer is the only way to see memory hygiene from a test.
    """
    now = [0.0]
    vault = CredentialVault(lambda: now[0], 1.0)

    def parked_buffer() -> bytearray:
        parked = vault._parked  # the buffer itself is what must be wiped
        assert parked is not None
        return parked.password

    token = vault.park("alice", Secret("first-secret"))
    first = parked_buffer()
    vault.park("alice", Secret("second-secret"))  # replacement wipes the first
    assert first == bytearray(len("first-secret"))
    assert vault.take(token.reveal().encode()) is None  # the replaced token is dead
    second = parked_buffer()
    token = vault.park("bob", Secret("third-secret"))
    assert second == bytearray(len("second-secret"))
    third = parked_buffer()
    got = vault.take(token.reveal().encode())
    assert got is not None and got[0] == "bob" and got[1].reveal() == b"third-secret"
    assert third == bytearray(len("third-secret")) and not vault.pending
    vault.park("carol", Secret("fourth-secret"))
    fourth = parked_buffer()
    assert vault.pending and not vault.expire()  # not yet due
    now[0] = 1.0
    assert vault.expire() and not vault.pending
    assert fourth == bytearray(len("fourth-secret"))
    assert not vault.expire()  # nothing left to expire
    vault.park("dave", Secret("fifth-secret"))
    fifth = parked_buffer()
    vault.clear()
    assert fifth == bytearray(len("fifth-secret")) and not vault.pending


def test_a_stale_socket_of_ours_is_replaced(
    tmp_path: Path, tokens: Tokens, start_sso: Callable[..., PollingFakeContext]
) -> None:
    """A socket file left by a killed agent (ours: our uid, a socket) is removed and re-bound."""
    directory = tmp_path / "sso"
    directory.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(directory / "cred.sock"))
    stale.close()  # the file stays, nobody listens
    sso = start_sso()
    token = _park(sso, tokens)
    assert _exchange(directory / "cred.sock", _request(token)) == (OK, b"alice", PASSWORD.encode())


def test_requests_split_across_writes_are_reassembled(
    tmp_path: Path, tokens: Tokens, start_sso: Callable[..., PollingFakeContext]
) -> None:
    sso = start_sso()
    token = _park(sso, tokens)
    request = _request(token)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(tmp_path / "sso" / "cred.sock"))
        for piece in (request[:3], request[3:8], request[8:12], request[12:]):  # header, length, token
            s.sendall(piece)
            time.sleep(0.1)
        reply = s.recv(4096)
    assert reply[:7] == b"CCSSO\x01" + bytes([OK])


def test_a_client_that_resets_mid_request_is_dropped_and_burns_nothing(
    tmp_path: Path, tokens: Tokens, start_sso: Callable[..., PollingFakeContext]
) -> None:
    sso = start_sso()
    token = _park(sso, tokens)
    path = tmp_path / "sso" / "cred.sock"
    rude = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    rude.connect(str(path))
    rude.sendall(b"CCS")
    rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rude.close()
    quiet = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    quiet.connect(str(path))
    quiet.close()  # connects and leaves without a byte
    assert _exchange(path, _request(token)) == (OK, b"alice", PASSWORD.encode())


def test_anything_but_our_own_socket_at_the_path_is_refused_and_left_alone(
    tmp_path: Path, start_sso: Callable[..., PollingFakeContext]
) -> None:
    directory = tmp_path / "sso"
    directory.mkdir(mode=0o700)
    squat = directory / "cred.sock"
    squat.write_text("ours, but not a socket")
    with pytest.raises(UnavailableError, match=rf"^{squat} exists and is not our socket: refusing$"):
        start_sso()
    assert squat.read_text() == "ours, but not a socket"
    squat.unlink()
    foreign = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    foreign.bind(str(squat))
    foreign.close()
    require_root("to give the socket file to another uid")
    os.chown(squat, 65534, 65534)  # a socket, but another uid's
    with pytest.raises(UnavailableError, match=rf"^{squat} exists and is not our socket: refusing$"):
        start_sso()
    assert squat.stat().st_uid == 65534


PEER_CLIENT = """
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
token = sys.argv[2].encode()
s.sendall(b"CCSSO" + struct.pack(">BI", 1, len(token)) + token)
print(s.recv(4096)[6])
"""


def test_the_peer_check_uses_the_uid_not_the_gid(
    tokens: Tokens, start_sso: Callable[..., PollingFakeContext], world_dir: Path
) -> None:
    """A client whose uid is allowed gets the credential; one whose *gid* has that number does not."""
    require_root("to run clients as other uids")
    setpriv = require_binary("setpriv", "util-linux")
    allowed, other = 60011, 60012
    sso = start_sso(socket_dir=str(world_dir / "sso"), socket_mode=0o666, allowed_peer_uids=[allowed])

    def fetch_as(uid: int, gid: int, token: bytes) -> str:
        argv = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "/usr/bin/python3", "-c", PEER_CLIENT]
        out = subprocess.run(
            [*argv, str(world_dir / "sso" / "cred.sock"), token.decode()],
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
            timeout=30,
        )
        return out.stdout.strip() or out.stderr.strip()

    token = _park(sso, tokens)
    assert fetch_as(other, allowed, token) == str(FORBIDDEN)
    assert fetch_as(allowed, other, token) == str(OK)


def _high_fd_socket() -> socket.socket:
    """A client socket whose fd is >= 1000, so it never takes the number the server reuses."""
    low = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    high = fcntl.fcntl(low.fileno(), fcntl.F_DUPFD_CLOEXEC, 1000)
    low.close()
    return socket.socket(fileno=high)


def test_a_finished_clients_timer_never_drops_the_next_client_on_its_fd(
    tmp_path: Path, tokens: Tokens, start_sso: Callable[..., PollingFakeContext]
) -> None:
    """Client A finishes; client B gets A's server-side fd number. A's timeout must be gone."""
    sso = start_sso(client_timeout_s=1.0)
    path = tmp_path / "sso" / "cred.sock"
    token = _park(sso, tokens)
    with _high_fd_socket() as a:
        a.settimeout(10)
        a.connect(str(path))
        a.sendall(_request(b"x" * 8))
        assert a.recv(4096)[6] == NOT_FOUND
    started = time.monotonic()
    time.sleep(0.7)
    request = _request(token)
    with _high_fd_socket() as b:  # its server-side fd is the number A's had
        b.settimeout(10)
        b.connect(str(path))
        b.sendall(request[:5])
        time.sleep(max(0.0, 1.3 - (time.monotonic() - started)))  # past A's 1.0 s, inside B's own
        b.sendall(request[5:])
        reply = b.recv(4096)
    assert reply[:7] == b"CCSSO\x01" + bytes([OK]), reply

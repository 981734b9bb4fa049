"""The credential socket: where a root PAM module trades a one-time token for the credentials.

A filesystem AF_UNIX stream socket in a directory only the agent's uid can enter (nothing to
squat, unlike OGA's abstract ``\\0/tmp/ovirt-cred-channel``); each client is checked with
SO_PEERCRED against ``allowed_peer_uids`` before it may say anything, many clients may connect
at once (one impostor cannot consume "the" accept), and a slow client is dropped after
``client_timeout_s``. Runs on the bridge thread, non-blocking.

Root never follows a path here: the directory is created, then opened with ``O_NOFOLLOW`` and
checked and chmodded through that descriptor, and every later step (the stale-socket check,
``bind`` through ``/proc/self/fd/N``, ``chmod``, the final ``unlink``) is relative to the
descriptor. Swapping the directory's name for a symlink (possible if ``socket_dir`` sits in a
directory another user can write) therefore changes nothing, and inside the root-owned
directory nobody else can create a name. No ``umask`` dance: it is process-wide (other threads
create files), and it is not needed: ``bind`` creates the node 0755 at most (only root may
connect) until the ``chmod`` to ``socket_mode``, and SO_PEERCRED is checked on every client.

Wire format, version 1 (all integers big-endian)::

    request  = b"CCSSO" version:u8 len:u32 token[len]
    reply    = b"CCSSO" version:u8 status:u8 ulen:u32 user[ulen] plen:u32 password[plen]
    status   = 0 OK | 1 NOT_FOUND (wrong/used/expired token) | 2 FORBIDDEN (peer) | 3 BAD_REQUEST

Must not import zmq; never logs tokens or passwords.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from concierge.actors.sso.vault import CredentialVault
from concierge.errors import UnavailableError
from concierge.runtime.node import NodeContext, TimerHandle

log = logging.getLogger(__name__)

MAGIC = b"CCSSO"
VERSION = 1
OK, NOT_FOUND, FORBIDDEN, BAD_REQUEST = 0, 1, 2, 3
MAX_TOKEN = 256
#: clients served at once (allowed peers only; anyone else is answered FORBIDDEN and closed)
MAX_CLIENTS = 32
SOCKET_NAME = "cred.sock"


def build_reply(status: int, user: bytes = b"", password: bytes = b"") -> bytes:
    """Encode one reply frame."""
    return (
        MAGIC
        + struct.pack(">BB", VERSION, status)
        + struct.pack(">I", len(user))
        + user
        + struct.pack(">I", len(password))
        + password
    )


def build_request(token: bytes) -> bytes:
    """Encode one request frame (used by tests and documented for the PAM module)."""
    return MAGIC + struct.pack(">BI", VERSION, len(token)) + token


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end (SO_PEERCRED, set by the kernel at connect)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def secure_dir(path: Path, mode: int) -> int:
    """Create ``path`` with ``mode`` (or verify an existing one is ours); return a descriptor of it.

    Opened with ``O_NOFOLLOW | O_DIRECTORY``, checked with ``fstat`` and chmodded with ``fchmod``,
    so the checks and every later use concern the same directory whatever happens to its name.

    Raises:
        UnavailableError: the directory is a symlink, not a directory, or owned by someone else.
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=mode)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise UnavailableError(f"credential socket dir {path} is not a directory ({err.strerror})") from None
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        os.close(fd)
        raise UnavailableError(f"credential socket dir {path} is owned by uid {st.st_uid}: refusing")
    if stat.S_IMODE(st.st_mode) != mode:
        os.fchmod(fd, mode)
    return fd


@dataclass
class _Client:
    sock: socket.socket
    uid: int
    buf: bytearray = field(default_factory=bytearray)
    timer: TimerHandle | None = None


class CredentialSocket:
    """Serves the vault to allowed peers; bridge thread only."""

    def __init__(
        self,
        ctx: NodeContext,
        vault: CredentialVault,
        directory: Path,
        *,
        dir_mode: int,
        socket_mode: int,
        allowed_uids: tuple[int, ...],
        client_timeout_s: float,
    ) -> None:
        self.ctx = ctx
        self.vault = vault
        self.directory = directory
        self.path = directory / SOCKET_NAME
        self.dir_mode = dir_mode
        self.socket_mode = socket_mode
        self.allowed_uids = frozenset(allowed_uids)
        self.client_timeout_s = client_timeout_s
        self._listener: socket.socket | None = None
        self._dir_fd = -1
        self._clients: dict[int, _Client] = {}

    def open(self) -> None:
        """Create the directory and socket and start accepting."""
        dir_fd = secure_dir(self.directory, self.dir_mode)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            try:
                st = os.stat(SOCKET_NAME, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
                    raise UnavailableError(f"{self.path} exists and is not our socket: refusing")
                os.unlink(SOCKET_NAME, dir_fd=dir_fd)
            listener.bind(f"/proc/self/fd/{dir_fd}/{SOCKET_NAME}")
            os.chmod(SOCKET_NAME, self.socket_mode, dir_fd=dir_fd)
            listener.listen(16)
        except BaseException:
            listener.close()
            os.close(dir_fd)
            raise
        self._dir_fd = dir_fd
        listener.setblocking(False)
        self._listener = listener
        self.ctx.watch_fd(listener.fileno(), functools.partial(self._guarded, self._accept_all, -1))

    def close(self) -> None:
        """Stop accepting, drop clients, remove the socket file."""
        for fd in list(self._clients):
            self._drop(fd)
        if self._listener is not None:
            self.ctx.unwatch_fd(self._listener.fileno())
            self._listener.close()
            self._listener = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(SOCKET_NAME, dir_fd=self._dir_fd)
            os.close(self._dir_fd)
            self._dir_fd = -1

    def _guarded(self, callback: Callable[[int], None], fd: int, revents: int = 0) -> None:
        """fd callback boundary: a failure drops the client concerned, never the actor."""
        del revents
        try:
            callback(fd)
        except Exception as err:  # noqa: BLE001 - boundary; no traceback: its text could quote a secret
            self.ctx.count("sso.socket_failed")
            log.warning("credential socket failure: %s", type(err).__name__, extra={"event": "sso.socket_failed"})
            self._drop(fd)

    def _accept_all(self, _: int) -> None:
        while self._listener is not None:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                log.warning("credential socket accept failed: %s", err, extra={"event": "sso.accept_failed"})
                return
            sock.setblocking(False)
            try:
                uid = peer_uid(sock)
            except OSError:
                sock.close()
                continue
            if len(self._clients) >= MAX_CLIENTS:
                self.ctx.count("sso.busy")
                self._send_close(sock, build_reply(BAD_REQUEST))
                continue
            if uid not in self.allowed_uids:
                self.ctx.count("sso.peer_refused")
                log.warning("credential socket: uid %d refused", uid, extra={"event": "sso.peer_refused"})
                self._send_close(sock, build_reply(FORBIDDEN))
                continue
            client = _Client(sock, uid)
            fd = sock.fileno()
            self._clients[fd] = client
            client.timer = self.ctx.call_later(self.client_timeout_s, functools.partial(self._drop, fd))
            self.ctx.watch_fd(fd, functools.partial(self._guarded, self._on_data, fd))

    def _on_data(self, fd: int) -> None:
        client = self._clients.get(fd)
        if client is None:
            return
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(fd)
            return
        client.buf += data
        head = len(MAGIC) + 5
        if len(client.buf) < head:
            return
        if client.buf[: len(MAGIC)] != MAGIC or client.buf[len(MAGIC)] != VERSION:
            self._finish(fd, build_reply(BAD_REQUEST))
            return
        (length,) = struct.unpack(">I", client.buf[len(MAGIC) + 1 : head])
        if length > MAX_TOKEN:
            self._finish(fd, build_reply(BAD_REQUEST))
            return
        if len(client.buf) < head + length:
            return
        token = bytes(client.buf[head : head + length])
        found = self.vault.take(token)
        if found is None:
            self.ctx.count("sso.token_refused")
            log.warning(
                "credential socket: unknown, used or expired token",
                extra={"event": "sso.token_refused"},
            )
            self._finish(fd, build_reply(NOT_FOUND))
            return
        user, password = found
        self.ctx.count("sso.credentials_handed")
        log.info("credentials handed to uid %d", client.uid, extra={"event": "sso.credentials_handed"})
        reply = bytearray(build_reply(OK, user.encode("utf-8"), password.reveal()))
        self._finish(fd, bytes(reply))
        for i in range(len(reply)):
            reply[i] = 0

    def _finish(self, fd: int, reply: bytes) -> None:
        client = self._clients.pop(fd, None)
        if client is None:
            return
        self._forget(fd, client)
        self._send_close(client.sock, reply)

    def _drop(self, fd: int) -> None:
        client = self._clients.pop(fd, None)
        if client is not None:
            self._forget(fd, client)
            client.sock.close()

    def _forget(self, fd: int, client: _Client) -> None:
        self.ctx.unwatch_fd(fd)
        if client.timer is not None:
            client.timer.cancel()

    @staticmethod
    def _send_close(sock: socket.socket, reply: bytes) -> None:
        with contextlib.suppress(OSError):
            sock.send(reply, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
        sock.close()

"""Per-uid listening sockets: ``RUNTIME_DIR/users/<uid>/session.sock``, made without races.

The per-uid directory is 0700 and owned by the uid, so the kernel keeps every *other*
unprivileged user out (SO_PEERCRED is checked again on accept). But that directory is writable
by its user, who may swap any name in it for a symlink at any moment, so root never creates,
opens, chowns or chmods a path inside it:

* the lock file (taken because binding over a live socket path silently steals it) lives in a
  root-owned 0700 directory, ``RUNTIME_DIR/session-gateway/<uid>.lock``;
* the user directory is created with ``mkdirat`` in the root-owned ``users/`` directory and then
  opened with ``O_NOFOLLOW | O_DIRECTORY``; ownership and mode are set with ``fchown``/``fchmod``
  on that descriptor;
* the socket is bound in the root-owned private directory (reached through its descriptor),
  chowned and chmodded *there*, where nobody else can replace a name, and then ``rename``\\d into
  the user directory. ``rename`` replaces the destination *name* and never follows a symlink
  there, so whatever the user put at ``session.sock`` is simply replaced.

Why not ``bind`` in place and then ``fchmod``/``fchown`` the socket descriptor: on Linux those
change the socket's sockfs inode, not the filesystem node that ``connect`` checks, so the path
would still have to be chowned by name, and that is exactly the race a user wins with a
symlink. Why not ``umask`` around ``bind``: it is process-wide (other threads create files) and
still leaves the owner root. Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from concierge.actors.session.messages import SOCKET_NAME

#: root-owned 0700 directory (under the runtime dir) holding lock files and staged sockets
PRIVATE_DIR_NAME = "session-gateway"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: listen() backlog: connections past it wait in connect() instead of costing us anything
BACKLOG = 16


@dataclass(slots=True)
class Endpoint:
    """One uid's listening socket, its lock and the descriptor of its directory."""

    uid: int
    path: Path
    sock: socket.socket
    lock_fd: int
    dir_fd: int
    sock_ino: int

    def close(self) -> None:
        """Stop listening; remove the socket only if the name still points at ours."""
        self.sock.close()
        with contextlib.suppress(OSError):
            if os.stat(SOCKET_NAME, dir_fd=self.dir_fd, follow_symlinks=False).st_ino == self.sock_ino:
                os.unlink(SOCKET_NAME, dir_fd=self.dir_fd)
        os.close(self.dir_fd)
        os.close(self.lock_fd)


def _root_dir(parent_fd: int | None, path: str | Path, mode: int) -> int:
    """Create (if needed) and open a directory that must be ours and writable by nobody else.

    Raises:
        PermissionError: the directory is owned by someone else or group/other-writable.
    """
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode, dir_fd=parent_fd)
    fd = os.open(path, _DIR_FLAGS, dir_fd=parent_fd)
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        os.close(fd)
        raise PermissionError(f"{path}: owned by uid {st.st_uid} or writable by others: refusing")
    return fd


def lock_path(runtime_dir: Path, uid: int) -> Path:
    """Where the endpoint lock of ``uid`` lives (root-owned directory, never the user's)."""
    return runtime_dir / PRIVATE_DIR_NAME / f"{uid}.lock"


def _user_dir(users_fd: int, uid: int, gid: int) -> int:
    """Open ``users/<uid>`` (created 0700), owned by the user; fchown/fchmod on the descriptor."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(str(uid), 0o700, dir_fd=users_fd)
    fd = os.open(str(uid), _DIR_FLAGS, dir_fd=users_fd)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o700)
    except OSError:
        os.close(fd)
        raise
    return fd


def _bind_staged(private_fd: int, uid: int, gid: int) -> tuple[socket.socket, str]:
    """A listening-ready socket bound at ``<private>/<uid>.sock``, already the user's and 0600."""
    staged = f"{uid}.sock"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staged, dir_fd=private_fd)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        sock.bind(f"/proc/self/fd/{private_fd}/{staged}")  # through the descriptor, not a path
        os.chown(staged, uid, gid, dir_fd=private_fd, follow_symlinks=False)
        os.chmod(staged, 0o600, dir_fd=private_fd)
    except OSError:
        sock.close()
        raise
    return sock, staged


def open_endpoint(runtime_dir: Path, uid: int, gid: int | None = None) -> Endpoint:
    """Create (or take over) the endpoint of ``uid``; raises OSError when locked by another."""
    gid = uid if gid is None else gid
    private_fd = _root_dir(None, runtime_dir / PRIVATE_DIR_NAME, 0o700)
    lock_fd = dir_fd = -1
    sock: socket.socket | None = None
    try:
        os.fchmod(private_fd, 0o700)
        lock_fd = os.open(
            f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=private_fd
        )
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        users_fd = _root_dir(None, runtime_dir / "users", 0o755)
        try:
            dir_fd = _user_dir(users_fd, uid, gid)
        finally:
            os.close(users_fd)
        sock, staged = _bind_staged(private_fd, uid, gid)
        os.rename(staged, SOCKET_NAME, src_dir_fd=private_fd, dst_dir_fd=dir_fd)
        ino = os.stat(SOCKET_NAME, dir_fd=dir_fd, follow_symlinks=False).st_ino
        sock.listen(BACKLOG)
    except OSError:
        if sock is not None:
            sock.close()
        for fd in (dir_fd, lock_fd):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        os.close(private_fd)
    return Endpoint(uid, runtime_dir / "users" / str(uid) / SOCKET_NAME, sock, lock_fd, dir_fd, ino)


def run_user_uids(run_user_dir: str) -> set[int]:
    """Uids owning a ``/run/user/<uid>`` directory (a login session exists or existed).

    Symlinks are not followed: a name must be a real directory owned by the uid it names.
    """
    found: set[int] = set()
    try:
        entries = list(os.scandir(run_user_dir))
    except OSError:
        return found
    for entry in entries:
        if entry.name.isdigit():
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and st.st_uid == int(entry.name):
                found.add(int(entry.name))
    return found

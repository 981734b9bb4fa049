"""Per-uid listening sockets: ``RUNTIME_DIR/users/<uid>/session.sock``.

The directory is 0700 and owned by the uid, so the kernel already keeps every other
unprivileged user out; SO_PEERCRED is checked again on accept. A lock file is taken before
binding because binding over a live socket path silently steals it. Standard library only.
"""

from __future__ import annotations

import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from concierge.actors.session.messages import SOCKET_NAME


@dataclass(slots=True)
class Endpoint:
    """One uid's listening socket and its lock."""

    uid: int
    path: Path
    sock: socket.socket
    lock_fd: int

    def close(self) -> None:
        """Stop listening and remove the socket (the directory stays for the next start)."""
        self.sock.close()
        self.path.unlink(missing_ok=True)
        os.close(self.lock_fd)


def users_dir(runtime_dir: Path) -> Path:
    """``RUNTIME_DIR/users``, created 0755 (only the per-uid directories are private)."""
    path = runtime_dir / "users"
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    return path


def open_endpoint(runtime_dir: Path, uid: int, gid: int | None = None) -> Endpoint:
    """Create (or take over) the endpoint of ``uid``; raises OSError when locked by another."""
    directory = users_dir(runtime_dir) / str(uid)
    directory.mkdir(mode=0o700, exist_ok=True)
    os.chown(directory, uid, uid if gid is None else gid)
    os.chmod(directory, 0o700)
    lock_fd = os.open(directory / f"{SOCKET_NAME}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock_fd)
        raise
    path = directory / SOCKET_NAME
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        sock.bind(str(path))
        os.chown(path, uid, uid if gid is None else gid)
        os.chmod(path, 0o600)
        sock.listen(16)
    except OSError:
        sock.close()
        os.close(lock_fd)
        raise
    return Endpoint(uid, path, sock, lock_fd)


def run_user_uids(run_user_dir: str) -> set[int]:
    """Uids owning a ``/run/user/<uid>`` directory (a login session exists or existed)."""
    found: set[int] = set()
    try:
        entries = list(os.scandir(run_user_dir))
    except OSError:
        return found
    for entry in entries:
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == int(entry.name):
                    found.add(int(entry.name))
            except OSError:
                continue
    return found

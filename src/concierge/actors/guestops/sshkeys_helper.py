"""The half of guest-ssh-*-authorized-keys that runs AS THE USER, in a child process.

Started by :mod:`concierge.actors.guestops.accounts` as ``python -I -S -c <this source>`` with
the user's uid, gid and groups; reads one JSON request on stdin, writes one JSON answer on
stdout. It never follows a symbolic link for ``.ssh`` or ``authorized_keys`` (O_NOFOLLOW,
openat-style ``dir_fd``), and because it runs as the user, even a race cannot make it read or
write a file the user could not. Semantics follow qemu-ga: raw ``\\n``-split lines, writes
replace the file atomically (0600), ``.ssh`` is created 0700 when missing.
Standard library only, and nothing from concierge (it runs with ``-I -S``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import sys
from typing import Any

MAX_FILE = 16 * 1024 * 1024
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class FailureError(Exception):
    """An error whose message is qemu-ga's ``desc`` text."""


def _open_ssh_dir(home_fd: int, home: str, create: bool) -> int | None:
    try:
        return os.open(".ssh", DIR_FLAGS, dir_fd=home_fd)
    except FileNotFoundError:
        if not create:
            return None
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise FailureError(f"refusing '{home}/.ssh': not a directory (symbolic link?)") from err
        raise FailureError(f"failed to open '{home}/.ssh': {err.strerror}") from err
    try:
        os.mkdir(".ssh", 0o700, dir_fd=home_fd)
        fd = os.open(".ssh", DIR_FLAGS, dir_fd=home_fd)
        os.fchmod(fd, 0o700)
    except OSError as err:
        raise FailureError(f"failed to create directory '{home}/.ssh': {err.strerror}") from err
    return fd


def _read_lines(dir_fd: int | None, path: str) -> list[str] | None:
    """Raw ``\\n``-split lines of authorized_keys, None when it does not exist."""
    if dir_fd is None:
        return None
    try:
        fd = os.open("authorized_keys", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise FailureError(f"failed to read '{path}': refusing a symbolic link") from err
        raise FailureError(f"failed to read '{path}': {err.strerror}") from err
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FailureError(f"failed to read '{path}': not a regular file")
        data = handle.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise FailureError(f"failed to read '{path}': file too large")
    text = data.decode("utf-8", "replace")
    return text.split("\n") if text else []  # g_strsplit("") is empty, not [""]


def _write_lines(dir_fd: int, path: str, lines: list[str]) -> None:
    tmp = f".authorized_keys.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, "\n".join(lines).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, "authorized_keys", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise FailureError(f"failed to update '{path}': {err.strerror}") from err


def run(request: dict[str, Any]) -> Any:
    """Do one operation: ``get``, ``add`` or ``remove``."""
    home = request["home"]
    path = f"{home}/.ssh/authorized_keys"
    try:
        home_fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise FailureError(f"failed to open home directory '{home}': {err.strerror}") from err
    op = request["op"]
    keys: list[str] = request.get("keys", [])
    dir_fd = _open_ssh_dir(home_fd, home, create=op == "add")
    if op == "get":
        lines = _read_lines(dir_fd, path)
        if lines is None:
            raise FailureError(
                f"failed to read '{path}': Failed to open file \u201c{path}\u201d: {os.strerror(errno.ENOENT)}"
            )
        found = [line.strip() for line in lines]
        return {"keys": [k for k in reversed(found) if k and not k.startswith("#")]}
    if op == "add" and dir_fd is not None:
        lines = [] if request.get("reset") else (_read_lines(dir_fd, path) or [])
        for key in keys:
            if key not in lines:
                lines.append(key)
        _write_lines(dir_fd, path, lines)
        return {}
    if op == "remove":
        lines = _read_lines(dir_fd, path)
        if lines is None or dir_fd is None:
            return {}
        _write_lines(dir_fd, path, [line for line in lines if line not in keys])
        return {}
    raise FailureError(f"unknown operation {op!r}")


def main() -> int:
    """Read the request, answer ``{"ok": ...}`` or ``{"error": desc}``."""
    try:
        answer: dict[str, Any] = {"ok": run(json.loads(sys.stdin.buffer.read()))}
    except FailureError as err:
        answer = {"error": str(err)}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())

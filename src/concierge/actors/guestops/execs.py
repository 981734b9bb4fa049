"""guest-exec / guest-exec-status: asynchronous children, captured output, qemu-ga's reaping.

Each child runs in its own process group (so a runaway tree can be killed at once) and is
recorded in ``state_dir/exec/<pid>`` until reaped; records left by a previous instance are
killed at start (identity checked by the process start time, so a recycled pid is spared).
Pipes and pidfds are multiplexed by one :class:`Reactor` thread; output beyond the limit is
drained and dropped with the ``*-truncated`` flag, so a chatty child never blocks.
Must not import pykka or zmq.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import selectors
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from concierge.actors.guestops import qbase64
from concierge.actors.guestops.reactor import Reactor
from concierge.actors.guestproc import guest_environment, posix_spawn_guest
from concierge.errors import ActorError, ErrorCode

log = logging.getLogger(__name__)

CAPTURE_MODES = ("none", "stdout", "stderr", "separated", "merged")
_READ_SIZE = 64 * 1024
_GLIB_DEFAULT_PATH = "/bin:/usr/bin:."
#: signals Python sets to SIG_IGN, restored to default in the child (as any shell would)
_RESET_SIGNALS = tuple(s for s in (signal.SIGPIPE, signal.SIGXFSZ) if s is not None)


def _bad(message: str) -> ActorError:
    return ActorError(ErrorCode.BAD_REQUEST, message)


def _spawn_error(path: str, err_no: int) -> ActorError:
    return _bad(
        "Guest agent command failed, error was "
        f"'Failed to execute child process \u201c{path}\u201d ({os.strerror(err_no)})'"
    )


def capture_mode(value: object) -> str:
    """Normalise ``capture-output`` (bool or the 8.0+ enum) to one of :data:`CAPTURE_MODES`."""
    if value is None or value is False:
        return "none"
    if value is True:
        return "separated"
    if isinstance(value, str) and value in CAPTURE_MODES:
        return value
    raise _bad(f"Parameter 'capture-output' does not accept value '{value}'")


def resolve(path: str) -> str:
    """The executable glib's G_SPAWN_SEARCH_PATH would run (the agent's own PATH)."""
    if "/" in path:
        return path
    for folder in os.environ.get("PATH", _GLIB_DEFAULT_PATH).split(":"):
        candidate = os.path.join(folder or ".", path)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise _spawn_error(path, errno.ENOENT)


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (boot-relative start time), None if the pid is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].split()[19].decode()


@dataclass(eq=False)
class _Stream:
    fd: int
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False


@dataclass(eq=False)
class Child:
    """One guest-exec child as guest-exec-status reports it."""

    pid: int
    pidfd: int
    out: _Stream | None = None
    err: _Stream | None = None
    stdin_fd: int = -1
    stdin_data: memoryview | None = None
    status: int | None = None
    open_fds: set[int] = field(default_factory=set)

    @property
    def finished(self) -> bool:
        """qemu-ga reports ``exited`` only once the child is reaped and its pipes are closed."""
        return self.status is not None and not self.open_fds


class ExecTable:
    """Children started by this actor process, their output and their persistent records."""

    def __init__(self, state_dir: Path, *, max_output: int, max_records: int) -> None:
        self._records = state_dir / "exec"
        self._records.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.max_output = max_output
        self.max_records = max_records
        self._children: OrderedDict[int, Child] = OrderedDict()
        self._lock = threading.Lock()
        self._frozen = False
        self._held_unlinks: list[int] = []
        self._reactor = Reactor("guestops-exec")

    # --- restart hygiene ----------------------------------------------------------------------
    def kill_leftovers(self) -> list[int]:
        """Kill the process groups of children a previous instance left running; return pids."""
        killed: list[int] = []
        for record in sorted(self._records.iterdir()):
            try:
                pid_text, started = record.read_text(encoding="ascii").split()[:2]
                pid = int(pid_text)
            except (OSError, ValueError):
                record.unlink(missing_ok=True)
                continue
            if start_time(pid) == started:
                try:
                    os.killpg(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
                except PermissionError:
                    log.warning(
                        "cannot kill leftover exec child %d", pid, extra={"event": "guestops.exec.leftover_unkillable"}
                    )
            record.unlink(missing_ok=True)
        if killed:
            log.warning(
                "killed %d exec children left by a previous instance",
                len(killed),
                extra={"event": "guestops.exec.leftover_killed", "pids": repr(killed)},
            )
        return killed

    # --- guest-exec ---------------------------------------------------------------------------
    def spawn(
        self,
        path: str,
        *,
        argv: list[str],
        env: list[str] | None,
        input_b64: str | None,
        capture: str,
        check: Callable[[str], None],
    ) -> int:
        """Start ``path`` asynchronously; ``check(real_executable)`` may veto it (policy)."""
        data = qbase64.decode(input_b64) if input_b64 is not None else None
        executable = resolve(path)
        check(os.path.realpath(executable))
        environment: dict[str, str]
        if env is None:
            environment = guest_environment()  # qemu-ga: its own environment (g_spawn, NULL envp)
        else:
            environment = {}
            for item in env:
                key, sep, value = item.partition("=")
                if sep and key:
                    environment[key] = value
        parent_fds: list[int] = []
        child_fds: list[int] = []
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        child_fds.append(devnull)
        try:
            stdin_r = devnull
            stdin_w = -1
            if data is not None:
                stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
                child_fds.append(stdin_r)
                parent_fds.append(stdin_w)
            out_r = err_r = -1
            out_w = err_w = devnull
            if capture in ("stdout", "separated", "merged"):
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                parent_fds.append(out_r)
                child_fds.append(out_w)
            if capture in ("stderr", "separated"):
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                parent_fds.append(err_r)
                child_fds.append(err_w)
            if capture == "merged":
                err_w = out_w
            actions = [
                (os.POSIX_SPAWN_DUP2, stdin_r, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
            ]
            try:
                pid = posix_spawn_guest(executable, [path, *argv], environment, actions, _RESET_SIGNALS)
            except OSError as err:
                raise _spawn_error(path, err.errno or errno.EIO) from err
        except BaseException as err:
            for fd in parent_fds:
                os.close(fd)
            if isinstance(err, OSError):  # pipe2 (EMFILE ...): a clear answer, not INTERNAL
                raise _bad(f"Guest agent command failed, error was '{err.strerror}'") from err
            raise
        finally:
            for fd in child_fds:
                os.close(fd)
        self._record(pid)
        self.set_frozen(False)  # a spawn means the filesystems are writable (a lost thaw event)
        pidfd = os.pidfd_open(pid)
        child = Child(pid=pid, pidfd=pidfd)
        if out_r >= 0:
            child.out = _Stream(out_r)
        if err_r >= 0:
            child.err = _Stream(err_r)
        if stdin_w >= 0 and data is not None:
            child.stdin_fd = stdin_w
            child.stdin_data = memoryview(data)
        with self._lock:
            self._children[pid] = child
            self._trim()
        self._reactor.submit(lambda: self._watch(child))
        return pid

    def set_frozen(self, frozen: bool) -> None:
        """While filesystems are frozen, record removals wait (a write would block the reactor)."""
        with self._lock:
            self._frozen = frozen
        if not frozen:
            self._flush_unlinks()

    def _flush_unlinks(self) -> None:
        with self._lock:
            held, self._held_unlinks = self._held_unlinks, []
        for pid in held:
            (self._records / str(pid)).unlink(missing_ok=True)

    def _forget_record(self, pid: int) -> None:
        with self._lock:
            if self._frozen:
                self._held_unlinks.append(pid)
                return
        (self._records / str(pid)).unlink(missing_ok=True)

    def _record(self, pid: int) -> None:
        started = start_time(pid) or "0"
        try:
            (self._records / str(pid)).write_text(f"{pid} {started}\n", encoding="ascii")
        except OSError as err:
            log.warning(
                "cannot record exec child %d: %s", pid, err.strerror, extra={"event": "guestops.exec.record_failed"}
            )

    def _trim(self) -> None:
        """Forget the oldest finished-but-never-queried children beyond ``max_records``."""
        excess = len(self._children) - self.max_records
        if excess <= 0:
            return
        for pid in [p for p, c in self._children.items() if c.finished][:excess]:
            del self._children[pid]

    # --- reactor side -------------------------------------------------------------------------
    def _watch(self, child: Child) -> None:
        for stream in (child.out, child.err):
            if stream is not None:
                os.set_blocking(stream.fd, False)
                child.open_fds.add(stream.fd)
                self._reactor.add(stream.fd, selectors.EVENT_READ, functools.partial(self._on_output, child, stream))
        if child.stdin_fd >= 0:
            os.set_blocking(child.stdin_fd, False)
            child.open_fds.add(child.stdin_fd)
            self._reactor.add(child.stdin_fd, selectors.EVENT_WRITE, functools.partial(self._on_input, child))
        self._reactor.add(child.pidfd, selectors.EVENT_READ, functools.partial(self._on_exit, child))

    def _close_fd(self, child: Child, fd: int) -> None:
        self._reactor.remove(fd)
        os.close(fd)
        with self._lock:
            child.open_fds.discard(fd)

    def _on_output(self, child: Child, stream: _Stream, _mask: int) -> None:
        try:
            chunk = os.read(stream.fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close_fd(child, stream.fd)
            return
        room = self.max_output - len(stream.data)
        with self._lock:
            if len(chunk) > room:
                stream.truncated = True
                chunk = chunk[: max(room, 0)]
            stream.data += chunk

    def _on_input(self, child: Child, _mask: int) -> None:
        data = child.stdin_data
        try:
            if data is not None and len(data):
                written = os.write(child.stdin_fd, data)
                child.stdin_data = data = data[written:]
        except BlockingIOError:
            return
        except OSError:  # EPIPE: the child closed stdin or exited; the rest is discarded
            data = None
        if data is None or not len(data):
            child.stdin_data = None
            self._close_fd(child, child.stdin_fd)

    def _on_exit(self, child: Child, _mask: int) -> None:
        try:
            pid, status = os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = child.pid, 0
        if pid == 0:
            return
        self._reactor.remove(child.pidfd)
        os.close(child.pidfd)
        self._forget_record(child.pid)
        with self._lock:
            child.status = status

    # --- guest-exec-status --------------------------------------------------------------------
    def status(self, pid: int) -> dict[str, object]:
        """The child's state; the first ``exited: true`` answer forgets it (qemu-ga's reaping)."""
        with self._lock:
            child = self._children.get(pid)
            if child is None:
                raise _bad("Invalid parameter 'pid'")
            if not child.finished:
                return {"exited": False}
            del self._children[pid]
        status = child.status or 0
        result: dict[str, object] = {"exited": True}
        if os.WIFSIGNALED(status):
            result["signal"] = os.WTERMSIG(status)
        else:
            result["exitcode"] = os.waitstatus_to_exitcode(status)
        for key, stream in (("out", child.out), ("err", child.err)):
            if stream is not None and stream.data:
                result[f"{key}-data"] = qbase64.encode(bytes(stream.data))
                result[f"{key}-truncated"] = stream.truncated
        return result

    def running(self) -> int:
        """Children not reported as exited yet."""
        with self._lock:
            return len(self._children)

    def close(self) -> list[int]:
        """Kill the process groups of unfinished children (actor stop); return their pids."""
        with self._lock:
            alive = [c.pid for c in self._children.values() if c.status is None]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if alive:
            log.warning(
                "killed %d running exec children at stop",
                len(alive),
                extra={"event": "guestops.exec.killed_at_stop", "pids": repr(alive)},
            )
        self._reactor.stop()
        deadline = time.monotonic() + 1.0
        pending = list(alive)
        while pending and time.monotonic() < deadline:
            for pid in list(pending):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    pending.remove(pid)
                    (self._records / str(pid)).unlink(missing_ok=True)
            if pending:
                time.sleep(0.01)
        return alive

"""Fork server: actor processes forked from a pre-imported, frozen interpreter image.

Why: a fresh Python that imports zmq, pykka and msgspec costs ~14 MB of PSS; a child forked
from a process that already imported them (``gc.freeze()`` first) costs ~4 MB, because the
module pages stay shared copy-on-write. Guests are small, so this is how Concierge stays under
the memory of the agents it replaces. Start-up is faster too (no interpreter start, no imports).

Safety: the fork server is forked from the supervisor *before* the supervisor creates any
ZeroMQ context or thread, and it never creates one itself. Each actor is double-forked: the
intermediate exits at once, so the actor is re-parented to the supervisor, which is a child
subreaper; the supervisor then owns it like any child (pidfd, waitid, exit status).

A fork server may be given a number of ``spawns``: it exits once it has forked that many
actors. The per-user session has a single group process: a fork server kept alive only for a
restart would hold ~4 MB of pages that the supervisor and the group both copied (the originals
stay mapped by the fork server alone). After it exits, restarts start a fresh interpreter (the
supervisor's fallback when the fork server is gone): slower and bigger, but only after a crash.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import select
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_MAX_MSG = 65536


def _prctl(option: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def preload(entries: tuple[str, ...] = ()) -> list[str]:
    """Import the runtime and every actor's module, then freeze the heap so forks share it.

    Importing each enabled actor's module here, once, means its code objects live in pages that
    every actor process shares instead of each importing (and paying for) its own copy; so are
    the modules its node class lists in ``preload`` (back-ends it would import at start). A module
    that fails to import is skipped: the actor itself reports the error (exit 78) when it starts.
    Then the heap is made fork-friendly: the type attribute cache is emptied (each entry holds
    a reference to an attribute name, module globals included: a child replacing the entry
    decrements that string's count and copies its page), the free blocks of partly used
    pymalloc pools are filled (a child's new objects then go to fresh pages instead of copying
    shared ones) and the C heap is trimmed. Returns the modules that could not be preloaded.
    """
    import importlib  # noqa: PLC0415

    import msgspec  # noqa: F401, PLC0415
    import pykka  # noqa: F401, PLC0415
    import zmq  # noqa: F401, PLC0415

    import concierge.runtime.runner  # noqa: PLC0415
    import concierge.runtime.service  # noqa: F401, PLC0415

    failed = []
    for entry in entries:
        module, _, attr = entry.partition(":")
        try:
            node = getattr(importlib.import_module(module), attr, None)
        except Exception:  # noqa: BLE001 - any import failure is the actor's to report later
            failed.append(module)
            continue
        for lazy in getattr(node, "preload", ()):  # back-ends the node imports at start
            try:
                importlib.import_module(lazy)
            except Exception:  # noqa: BLE001, S112 - optional back-end (e.g. no Xlib): the node decides
                continue
    gc.collect()
    sys._clear_type_cache()
    gc.freeze()
    _fill_pool_holes()
    _trim_malloc()
    return failed


def _trim_malloc() -> None:
    """Give the free pages of the C heap back to the kernel (glibc): they would otherwise stay
    resident in every process of the image, and a child reusing them copies them first."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


#: objects that fill the free blocks of the pre-fork heap; never touched again
_FILLERS: list[list[object]] = []


def _pymalloc_free_blocks() -> dict[int, int]:
    """Free blocks per size class in pymalloc's partly used pools ({} when not pymalloc)."""
    debug = getattr(sys, "_debugmallocstats", None)
    if debug is None:
        return {}
    read_end, write_end = os.pipe()
    saved = os.dup(2)
    try:
        sys.stderr.flush()
        os.dup2(write_end, 2)
        debug()  # a few KB of text on fd 2: fits in the pipe
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode(errors="replace")
    free: dict[int, int] = {}
    for line in text.splitlines():
        fields = line.split()
        # "class size num_pools blocks_in_use avail_blocks"
        if len(fields) == 5 and all(field.isdigit() for field in fields):
            free[int(fields[1])] = int(fields[4])
    return free


def _fill_pool_holes() -> None:
    """Fill the free blocks of the heap's partly used pools, so that a forked child allocates
    its new objects in fresh pools of its own instead of in the holes of shared pages (each
    hole filled after fork copies a whole 4 KiB page that is otherwise shared)."""
    free = _pymalloc_free_blocks()
    fillers: list[object] = [None] * sum(free.values())
    i = 0
    for size, count in free.items():
        for _ in range(count):
            # untracked objects of exactly ``size`` bytes: object() is 16, a float 24 (-> 32),
            # bytes are 33 + len
            fillers[i] = object() if size <= 16 else float(i) if size <= 32 else b"\0" * (size - 33)
            i += 1
    _FILLERS.append(fillers)


class ForkServer:
    """Supervisor-side handle of the fork server process."""

    def __init__(self, keep_fds: tuple[int, ...] = (), spawns: int | None = None) -> None:
        """Fork the fork server; with ``spawns``, it exits after forking that many actors."""
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        supervisor_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # the fork server
            parent_sock.close()
            from concierge.proctitle import set_title  # noqa: PLC0415 - standard library only

            set_title("concierge: fork server", comm="cc-forkserver")
            code = 0
            try:
                _serve(child_sock, supervisor_pid, keep_fds, spawns)
            except BaseException:  # noqa: BLE001 - a fork server must never fall back into supervisor code
                code = 70
            os._exit(code)
        child_sock.close()
        self.pid = pid
        self.sock = parent_sock
        self.pidfd = os.pidfd_open(pid)
        self._spawns = spawns

    def spawn(
        self, actor_id: str, runtime_dir: str, stderr_fd: int, uid: int | None = None, gid: int | None = None
    ) -> int:
        """Fork an actor; returns its pid (already our child, via the subreaper)."""
        fields = (actor_id, runtime_dir, "" if uid is None else str(uid), "" if gid is None else str(gid))
        socket.send_fds(self.sock, ["\0".join(fields).encode()], [stderr_fd])
        self.sock.settimeout(10.0)
        reply = self.sock.recv(_MAX_MSG)
        if not reply:
            raise OSError("fork server gone")
        if reply.startswith(b"!"):
            raise OSError(reply[1:].decode(errors="replace") or "fork server failed")
        if self._spawns is not None:
            self._spawns -= 1
            if self._spawns <= 0:  # it exits now: reap it rather than leave a zombie
                select.select([self.pidfd], [], [], 2.0)
                self.alive()
        return int(reply)

    def alive(self) -> bool:
        """False once the fork server has exited (or has forked all it was asked to)."""
        try:
            running = os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED | os.WNOHANG) is None
        except ChildProcessError:
            running = False
        return running and (self._spawns is None or self._spawns > 0)

    def close(self) -> None:
        """Stop the fork server."""
        self.sock.close()
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED)
        os.close(self.pidfd)


def _serve(sock: socket.socket, supervisor_pid: int, keep_fds: tuple[int, ...], spawns: int | None) -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != supervisor_pid:
        return
    # a fork server re-forked from the running supervisor inherits its signal wake-up fd: an
    # actor would write a byte into whatever file reuses that fd number on each signal
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    keep = {sock.fileno(), 0, 1, 2, *keep_fds}
    for fd in os.listdir("/proc/self/fd"):
        if int(fd) not in keep:
            with contextlib.suppress(OSError):
                os.close(int(fd))
    # Lean on purpose: every page this loop writes between two forks (reference counts of the
    # objects it touches) is copied once more, the older actor keeping the old copy for itself;
    # hence plain bytes (id NUL runtime_dir NUL uid NUL gid -> pid, or "!" error), no json.
    recv_fds, send, close = socket.recv_fds, sock.send, os.close
    while True:
        try:
            data, fds, _, _ = recv_fds(sock, _MAX_MSG, 4)
        except OSError:
            return
        if not data:
            return
        try:
            send(b"%d" % _double_fork(data.split(b"\0"), fds, sock, supervisor_pid))
            if spawns is not None:
                spawns -= 1
                if spawns <= 0:
                    return
        except (OSError, ValueError, IndexError) as err:
            send(b"!" + str(err).encode())
        finally:
            for received in fds:
                close(received)


def _double_fork(request: list[bytes], fds: list[int], sock: socket.socket, supervisor_pid: int) -> int:
    if len(request) != 4 or not fds:
        raise ValueError("malformed spawn request")
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.close(read_end)
        try:
            actor = os.fork()
            if actor == 0:
                os.close(write_end)
                _become_actor(request, fds, sock, supervisor_pid)
            os.write(write_end, actor.to_bytes(8, "little"))
        finally:
            os._exit(0)
    os.close(write_end)
    raw = os.read(read_end, 8)
    os.close(read_end)
    os.waitpid(middle, 0)
    if len(raw) != 8:
        raise OSError("actor fork failed")
    return int.from_bytes(raw, "little")


def _become_actor(request: list[bytes], fds: list[int], sock: socket.socket, supervisor_pid: int) -> None:
    code = 70
    try:
        sock.close()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(fds[0], 2)
        os.close(devnull)
        os.close(fds[0])
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        actor_id, runtime_dir, uid, gid = (field.decode() for field in request)
        if gid:
            os.setgroups([])
            os.setgid(int(gid))
        if uid:
            os.setuid(int(uid))
        os.environ.pop("NOTIFY_SOCKET", None)
        os.environ.pop("WATCHDOG_USEC", None)
        from concierge.runtime import runner  # noqa: PLC0415

        code = runner.run_forked(actor_id, runtime_dir, supervisor_pid)
    finally:
        os._exit(code)

"""One supervised child: its spec, state, process handle, pidfd, log ring and statistics.

Spawns an actor forked from the fork server (a fresh interpreter when there is none) and
knows how to signal it. Decisions about restarts live in :mod:`concierge.supervisor.core`.
"""

from __future__ import annotations

import collections
import contextlib
import grp
import logging
import os
import pwd
import random
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from concierge.config.schema import ActorSection
from concierge.logs import EXIT_REASON_MARK, split_priority
from concierge.supervisor.dormancy import IdleClock
from concierge.supervisor.forkserver import ForkServer
from concierge.supervisor.policy import RestartWindow
from concierge.supervisor.state import State, allowed

log = logging.getLogger(__name__)

LOG_RING = 2000


@dataclass
class Child:
    """Runtime record of one actor process."""

    id: str
    spec: ActorSection
    window: RestartWindow
    settings: dict[str, Any]
    state: State = State.STOPPED
    proc: subprocess.Popen[bytes] | None = None
    pidfd: int = -1
    stderr_fd: int = -1
    pid: int = 0
    restarts: int = 0
    attempt: int = 0
    started_at: float = 0.0
    running_since: float = 0.0
    last_hb: float = 0.0
    last_exit: str = ""
    last_exit_class: str = ""
    health: str = "unknown"
    detail: str = ""
    #: why the process last exited, as the actor said it (config error, absent resource, crash)
    reason: str = ""
    counters: dict[str, int] = field(default_factory=dict)
    next_start: float = 0.0
    kill_at: float = 0.0
    term_sent: bool = False
    restart_pending: bool = False
    wanted: bool = True
    stderr_buf: bytes = b""
    #: why the actor is DORMANT (an unmet requirement, "on demand", idle), for status
    dormant_reason: str = ""
    idle: IdleClock = field(default_factory=IdleClock)
    #: times a request started it from DORMANT (often: give it a longer idle_stop_s)
    wakes: int = 0
    #: the current stop was decided because the actor was idle: it ends DORMANT, not STOPPED
    idle_stopping: bool = False
    logs: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=LOG_RING))

    def set_state(self, target: State) -> None:
        """Move to ``target``, logging (not raising on) an illegal transition."""
        if target == self.state:
            return
        if not allowed(self.state, target):
            log.error(
                "illegal transition %s -> %s for %s",
                self.state,
                target,
                self.id,
                extra={"event": "supervisor.illegal_transition"},
            )
        self.state = target

    def spawn(self, runtime_dir: Path, forkserver: ForkServer | None) -> None:
        """Start the actor process (forked from the fork server, else a fresh interpreter)."""
        uid = gid = None
        if self.spec.user:
            entry = pwd.getpwnam(self.spec.user)
            uid, gid = entry.pw_uid, entry.pw_gid
        if self.spec.group:
            gid = grp.getgrnam(self.spec.group).gr_gid
        if forkserver is not None and forkserver.alive():
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
            try:
                self.pid = forkserver.spawn(self.id, str(runtime_dir), write_end, uid, gid)
            except OSError:
                os.close(read_end)
                raise
            finally:
                os.close(write_end)
            self.stderr_fd = read_end
        else:
            self._exec(runtime_dir, uid, gid)
        self.pidfd = os.pidfd_open(self.pid)
        os.set_blocking(self.stderr_fd, False)
        self.stderr_buf = b""
        self.reason = ""

    def why(self) -> str:
        """What an operator is told about an actor that is not running: the reason it waits,
        or why it is FATAL (the supervisor's decision, then the actor's last words)."""
        if self.state == State.FATAL:
            return ": ".join(part for part in (self.detail, self.reason) if part)
        if self.state in (State.RUNNING, State.STARTING, State.STOPPING):
            return ""
        return self.reason

    def _exec(self, runtime_dir: Path, uid: int | None, gid: int | None) -> None:
        argv = [
            sys.executable, "-m", "concierge.runtime.runner",
            "--id", self.id, "--runtime-dir", str(runtime_dir), "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            close_fds=True, env=env, user=uid, group=gid, extra_groups=[] if gid is not None else None,
        )  # fmt: skip
        assert self.proc.stderr is not None
        self.pid = self.proc.pid
        self.stderr_fd = os.dup(self.proc.stderr.fileno())
        self.proc.stderr.close()

    def signal(self, signum: int) -> None:
        """Send a signal to the process if it still exists."""
        if self.pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, signum)

    def read_stderr(self) -> list[str]:
        """Complete lines available on the child's stderr (non-blocking), as written (with
        their ``<N>`` priority); the ring keeps them without it. The exit-reason line is
        consumed here: it sets :attr:`reason` and is not returned."""
        if self.stderr_fd < 0:
            return []
        chunks = []
        while True:
            try:
                data = os.read(self.stderr_fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        if not chunks:
            return []
        self.stderr_buf += b"".join(chunks)
        *lines, self.stderr_buf = self.stderr_buf.split(b"\n")
        if len(self.stderr_buf) > 65536:  # a child writing without newlines cannot grow us
            lines.append(self.stderr_buf)
            self.stderr_buf = b""
        out = []
        for raw in lines:
            if not raw:
                continue
            line = raw.decode("utf-8", "replace")
            if line.startswith(EXIT_REASON_MARK):
                self.reason = line[len(EXIT_REASON_MARK) :][:500]
                continue
            out.append(line)
            self.logs.append(split_priority(line)[1])
        return out

    def try_reap(self) -> int | None:
        """Collect the exit status if the process has exited (negative = signal), else None.

        Never blocks: a poll event can be stale when fd numbers were reused within one batch.
        """
        code = 0
        try:
            result = os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED | os.WNOHANG)
            if result is None:
                return None
            code = result.si_status if result.si_code == os.CLD_EXITED else -result.si_status
        except ChildProcessError:
            code = self.proc.returncode or 0 if self.proc is not None else 0
        os.close(self.pidfd)
        self.pidfd = -1
        if self.stderr_fd >= 0:
            os.close(self.stderr_fd)
        self.stderr_fd = -1
        self.proc = None
        self.pid = 0
        return code


def make_rng() -> random.Random:
    """Jitter source (not for security)."""
    return random.Random()  # noqa: S311

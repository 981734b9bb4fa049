"""Freeze hooks: qemu-ga's ``fsfreeze-hook`` protocol (one script, argument freeze/thaw) plus
``freezefail``, and an optional ``hook.d`` directory run directly.

A hook runs in its own session with stdio on /dev/null, under a timeout; a hook that outlives
it is killed (whole process group) and counts as failed. :meth:`HookRunner.cancel` kills the
running hook from another thread (a thaw must never wait for a slow freeze hook).
Standard library only; runs on worker threads.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Literal

from concierge.actors.guestproc import popen_guest

log = logging.getLogger(__name__)

Phase = Literal["freeze", "thaw", "freezefail"]

_IGNORED_SUFFIXES = (
    ".dpkg-dist",
    ".dpkg-old",
    ".dpkg-new",
    ".dpkg-tmp",
    ".rpmsave",
    ".rpmnew",
    ".rpmorig",
    ".swp",
    ".bak",
    "~",
)


class HookError(Exception):
    """A hook failed; the message is qemu-ga's text (``fsfreeze hook has failed ...``)."""


class HookRunner:
    """Runs the configured hooks for one phase; thread-safe, one phase at a time."""

    def __init__(self, hook: str, hook_dir: str, timeout_s: float) -> None:
        self.hook = hook
        self.hook_dir = hook_dir
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._running: subprocess.Popen[bytes] | None = None
        self._cancelled = threading.Event()

    def scripts(self, phase: Phase) -> list[str]:
        """The executables for ``phase``: hook first on freeze, last on thaw/freezefail."""
        found: list[str] = []
        if self.hook and os.path.lexists(self.hook):
            found.append(self.hook)
        if self.hook_dir and os.path.isdir(self.hook_dir):
            for entry in sorted(Path(self.hook_dir).iterdir()):
                name = entry.name
                if name.startswith(".") or name.endswith(_IGNORED_SUFFIXES):
                    continue
                if entry.is_file() and os.access(entry, os.X_OK):
                    found.append(str(entry))
        return found if phase == "freeze" else list(reversed(found))

    def run(self, phase: Phase) -> None:
        """Run every hook for ``phase``; on freeze the first failure raises HookError.

        For thaw and freezefail every hook runs; failures are logged and the first raised at
        the end (a thaw is never skipped because a hook misbehaves).
        """
        first_error: HookError | None = None
        for script in self.scripts(phase):
            try:
                self._run_one(script, phase)
            except HookError as err:
                if phase == "freeze":
                    raise
                log.warning("hook %s %s failed: %s", script, phase, err, extra={"event": "freeze.hook_failed"})
                first_error = first_error or err
        if first_error is not None:
            raise first_error

    def cancel(self) -> None:
        """Kill the hook that is running now (if any) and fail the current freeze phase."""
        self._cancelled.set()
        with self._lock:
            proc = self._running
        if proc is not None:
            _kill_group(proc)

    def reset_cancel(self) -> None:
        """Forget an earlier cancel before a new freeze starts."""
        self._cancelled.clear()

    def _run_one(self, script: str, phase: Phase) -> None:
        if not os.access(script, os.X_OK):
            err = os.strerror(errno.EACCES if os.path.exists(script) else errno.ENOENT)
            raise HookError(f"can't access fsfreeze hook '{script}': {err}")
        if phase == "freeze" and self._cancelled.is_set():
            raise HookError("fsfreeze hook has terminated abnormally")
        log.info("executing fsfreeze hook %s with arg '%s'", script, phase, extra={"event": "freeze.hook"})
        try:
            proc = popen_guest(
                [script, phase],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as err:
            reason = os.strerror(err.errno or 0)
            raise HookError(f"failed to create child process: {reason}") from err
        with self._lock:
            self._running = proc
        try:
            status = proc.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
            raise HookError(f"fsfreeze hook has timed out after {self.timeout_s:g} s and was killed") from None
        finally:
            with self._lock:
                self._running = None
        if status < 0:
            raise HookError("fsfreeze hook has terminated abnormally")
        if status != 0:
            raise HookError(f"fsfreeze hook has failed with status {status}")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()

"""Filesystem quiesce with a lease: freeze / thaw / status / recovery, safe from any thread.

Order of a freeze: hooks ``freeze`` -> mount plan -> marker written -> listener told "frozen"
(supervisor stops writing, logs buffer) -> FIFREEZE children first. Any failure after the
freeze hook thaws what was frozen, removes the marker and runs hooks ``freezefail``.
A freeze always ends: on thaw, on lease expiry (a timer thread independent of the actor
threads), on channel loss (the node calls :meth:`Quiescer.thaw`), on stop, or — after a crash
or SIGKILL — at the next start through :meth:`Quiescer.recover` and the marker.
:meth:`Quiescer.thaw` cancels a freeze still in progress (kills a slow hook) instead of
waiting behind it. Must not import the actor runtime (``concierge.runtime.node``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Literal, NoReturn, Protocol

from concierge.actors.lifecycle import fsops
from concierge.actors.lifecycle.hooks import HookError, HookRunner
from concierge.actors.lifecycle.marker import FreezeMarker
from concierge.actors.lifecycle.mounts import Mount, freeze_order

log = logging.getLogger(__name__)

Phase = Literal["thawed", "freezing", "frozen"]


class QuiesceError(Exception):
    """A freeze failed or was refused; ``message`` is the text for the requester."""

    def __init__(self, message: str, *, already_frozen: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.already_frozen = already_frozen


class QuiesceListener(Protocol):
    """Who hears about freeze state changes (the node: supervisor note, events, logs)."""

    def freeze_state(self, frozen: bool, deadline_s: float) -> None:
        """Called before the first FIFREEZE (True) and after the last FITHAW (False)."""

    def frozen(self, count: int, mountpoints: list[str], deadline_s: float) -> None:
        """A freeze completed."""

    def thawed(self, count: int, reason: str) -> None:
        """A freeze ended (``reason``: request, lease, disconnect, restart, stop)."""


class Quiescer:
    """The freeze state machine of one lifecycle process."""

    def __init__(
        self,
        *,
        mounts: Callable[[], Sequence[Mount]],
        hooks: HookRunner,
        marker: FreezeMarker,
        lease_s: float,
        listener: QuiesceListener,
    ) -> None:
        self._mounts = mounts
        self._hooks = hooks
        self._marker = marker
        self.lease_s = lease_s
        self._listener = listener
        self._op_lock = threading.Lock()  # one freeze/thaw/recovery at a time
        self._state_lock = threading.Lock()  # guards the fields below, never held while blocking
        self._phase: Phase = "thawed"
        self._frozen: list[str] = []
        self._generation = 0
        self._lease: threading.Timer | None = None
        self._cancel = threading.Event()

    # --- queries (never block) --------------------------------------------------------------
    def status(self) -> Literal["frozen", "thawed"]:
        """qemu-ga's view: frozen from the first FIFREEZE until the thaw completed."""
        with self._state_lock:
            return "frozen" if self._phase == "frozen" else "thawed"

    def active(self) -> bool:
        """True from the start of a freeze (hooks included) until it is thawed."""
        with self._state_lock:
            return self._phase != "thawed"

    def frozen_mountpoints(self) -> list[str]:
        """Mountpoints this process froze and has not thawed yet."""
        with self._state_lock:
            return list(self._frozen)

    # --- operations (block; call from worker threads) ----------------------------------------
    def freeze(self, requested: Sequence[str] | None = None) -> int:
        """Freeze every candidate (or the ``requested`` mountpoints); returns how many froze."""
        with self._op_lock:
            if self.status() == "frozen":
                raise QuiesceError("filesystems are already frozen", already_frozen=True)
            self._cancel.clear()
            self._hooks.reset_cancel()
            with self._state_lock:
                self._phase = "freezing"
            try:
                return self._freeze_locked(requested)
            finally:
                with self._state_lock:
                    if self._phase == "freezing":
                        self._phase = "thawed"

    def _freeze_locked(self, requested: Sequence[str] | None) -> int:
        try:
            self._hooks.run("freeze")
        except HookError as err:
            self._fail([], str(err))
        if self._cancel.is_set():
            self._fail([], "fsfreeze was cancelled by a thaw request")
        try:
            plan = freeze_order(self._mounts(), requested)
        except OSError as err:
            self._fail([], f"failed to read the mount table: {err.strerror}")
        if not plan:
            return 0
        self._marker.write([m.mountpoint for m in plan])
        self._listener.freeze_state(True, self.lease_s)
        with self._state_lock:
            self._phase = "frozen"
        done: list[str] = []
        for mount in plan:
            if self._cancel.is_set():
                self._fail(done, "fsfreeze was cancelled by a thaw request", notified=True)
            try:
                if fsops.freeze(mount.mountpoint):
                    done.append(mount.mountpoint)
            except fsops.FreezeError as err:
                self._fail(done, str(err.strerror), notified=True)
        if not done:
            self._marker.remove()
            with self._state_lock:
                self._phase = "thawed"
            self._listener.freeze_state(False, 0.0)
            return 0
        with self._state_lock:
            self._frozen = done
            self._generation += 1
            generation = self._generation
        self._arm_lease(generation)
        log.info("froze %d filesystems", len(done), extra={"event": "freeze.frozen"})
        self._listener.frozen(len(done), list(done), self.lease_s)
        return len(done)

    def _fail(self, frozen: list[str], message: str, *, notified: bool = False) -> NoReturn:
        """Undo a partial freeze, tell hooks ``freezefail``, raise the error (never returns)."""
        for path in reversed(frozen):
            fsops.thaw(path)
        if notified:
            self._marker.remove()
            with self._state_lock:
                self._phase = "thawed"
            self._listener.freeze_state(False, 0.0)
        log.warning("freeze failed: %s", message, extra={"event": "freeze.failed"})
        try:
            self._hooks.run("freezefail")
        except HookError as err:
            log.warning("freezefail hook failed: %s", err, extra={"event": "freeze.hook_failed"})
        raise QuiesceError(message)

    def thaw(self, reason: str = "request") -> int:
        """Thaw what this process froze (cancelling a freeze in progress); run hooks ``thaw``."""
        with self._state_lock:
            freezing = self._phase == "freezing"
        if freezing:
            self._cancel.set()
            self._hooks.cancel()
        with self._op_lock:
            with self._state_lock:
                frozen, self._frozen = self._frozen, []
                was_frozen = self._phase == "frozen"
                self._phase = "thawed"
                self._generation += 1
                lease, self._lease = self._lease, None
            if lease is not None:
                lease.cancel()
            count = sum(1 for path in reversed(frozen) if fsops.thaw(path))
            if was_frozen:
                self._marker.remove()
                self._listener.freeze_state(False, 0.0)
            try:
                self._hooks.run("thaw")
            except HookError as err:  # the filesystems are thawed; a hook cannot undo that
                log.warning("thaw hook failed: %s", err, extra={"event": "freeze.hook_failed"})
            if was_frozen:
                log.info("thawed %d filesystems (%s)", count, reason, extra={"event": "freeze.thawed"})
                self._listener.thawed(count, reason)
            return count

    def recover(self, candidates: Callable[[], Sequence[Mount]] | None = None) -> int | None:
        """Thaw what a killed predecessor froze (from the marker); None when there was none."""
        with self._op_lock:
            content = self._marker.read()
            if content is None:
                return None
            points = content.mountpoints
            if not points:  # corrupt marker: thaw every candidate rather than stay frozen
                points = [m.mountpoint for m in (candidates or self._mounts)()]
            count = sum(1 for path in points if fsops.thaw(path))
            self._marker.remove()
            log.warning(
                "a previous run (pid %d) left %d filesystems frozen; thawed %d",
                content.pid,
                len(points),
                count,
                extra={"event": "freeze.recovered"},
            )
            self._listener.freeze_state(False, 0.0)
            try:
                self._hooks.run("thaw")
            except HookError as err:
                log.warning("thaw hook failed: %s", err, extra={"event": "freeze.hook_failed"})
            self._listener.thawed(count, "restart")
            return count

    def close(self) -> None:
        """Stop: thaw if frozen (a stopping agent never leaves the guest frozen)."""
        if self.active():
            self.thaw("stop")

    # --- lease -------------------------------------------------------------------------------
    def _arm_lease(self, generation: int) -> None:
        if self.lease_s <= 0:
            return
        timer = threading.Timer(self.lease_s, self._lease_expired, args=(generation,))
        timer.daemon = True
        timer.name = "freeze-lease"
        with self._state_lock:
            self._lease = timer
        timer.start()

    def _lease_expired(self, generation: int) -> None:
        with self._state_lock:
            current = generation == self._generation and self._phase == "frozen"
        if current:
            log.warning("freeze lease of %g s expired; thawing", self.lease_s, extra={"event": "freeze.lease_expired"})
            self.thaw("lease")

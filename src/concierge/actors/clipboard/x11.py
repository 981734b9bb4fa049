"""X11 clipboard backend: watches guest owners (XFixes) and converts their selections on demand
(INCR reception included); :mod:`x11_serve` owns selections for the client.

One worker thread owns the Xlib connection and runs both halves; commands arrive on a queue
plus a wake-up pipe.
Must not import the node, Wayland or D-Bus code.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from Xlib import X, Xatom, display, error
from Xlib.ext import xfixes

from concierge.actors.clipboard.backend import BackendEvents
from concierge.actors.clipboard.formats import owner_types, pick_target
from concierge.actors.clipboard.images import ImageError, convert
from concierge.actors.clipboard.x11_serve import SelectionServer, wid
from concierge.actors.vdagent import Selection
from concierge.errors import UnavailableError

log = logging.getLogger(__name__)

SELECTION_ATOMS: dict[int, str] = {
    int(Selection.CLIPBOARD): "CLIPBOARD",
    int(Selection.PRIMARY): "PRIMARY",
}
FETCH_TIMEOUT_S = 10.0
READ_WINDOW = 256 * 1024
OWNER_MASK = (
    xfixes.XFixesSetSelectionOwnerNotifyMask
    | xfixes.XFixesSelectionWindowDestroyNotifyMask
    | xfixes.XFixesSelectionClientCloseNotifyMask
)


@dataclass(slots=True)
class _Job:
    """One conversion of a guest-owned selection in flight (TARGETS or data)."""

    selection: int
    target: str
    token: int = -1  # -1: a TARGETS probe
    have: int = 0
    want: int = 0
    deadline: float = 0.0
    incr: bool = False
    chunks: list[bytes] = field(default_factory=list)


class X11Clipboard:
    """The X11 selection owner / watcher worker."""

    name = "x11"
    selections: tuple[int, ...] = (int(Selection.CLIPBOARD), int(Selection.PRIMARY))

    def __init__(self, display_name: str | None) -> None:
        try:
            self.dpy: Any = display.Display(display_name or None)
        except (error.DisplayError, OSError) as err:
            raise UnavailableError(f"cannot open X display {display_name!r}: {err}") from err
        if not self.dpy.has_extension("XFIXES"):
            self.dpy.close()
            raise UnavailableError("X server lacks XFIXES (needed to see clipboard owners)")
        self.dpy.xfixes_query_version()
        self.window = self.dpy.screen().root.create_window(
            -10,
            -10,
            1,
            1,
            0,
            X.CopyFromParent,
            X.InputOutput,
            X.CopyFromParent,
            event_mask=X.PropertyChangeMask,
        )
        self.window.set_wm_name("concierge clipboard")
        self._atoms: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self.sel_atom = {sel: self.atom(name) for sel, name in SELECTION_ATOMS.items()}
        self.sel_of_atom = {atom: sel for sel, atom in self.sel_atom.items()}
        self.prop = {sel: self.atom(f"CONCIERGE_{name}") for sel, name in SELECTION_ATOMS.items()}
        self.events: BackendEvents | None = None
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._running = False
        self._thread: threading.Thread | None = None
        self.offered: dict[int, list[str]] = {}  # guest owner's targets per selection
        self.jobs: dict[int, collections.deque[_Job]] = {s: collections.deque() for s in self.selections}
        self.server = SelectionServer(self)
        self.dpy.set_error_handler(self._on_x_error)

    # --- public, thread-safe ------------------------------------------------------------------
    def start(self, events: BackendEvents) -> None:
        """Watch owners and start the worker thread (current owners are announced)."""
        self.events = events
        self._running = True
        self._thread = threading.Thread(target=self._run, name="clipboard-x11", daemon=True)
        self._thread.start()

    def grab(self, selection: int, types: list[int]) -> None:
        """Own ``selection`` for the client."""
        self._post(lambda: self.server.grab(selection, types))

    def release(self, selection: int) -> None:
        """Give up a client-owned selection."""
        self._post(lambda: self.server.release(selection))

    def provide(self, token: int, clip_type: int, data: bytes | None) -> None:
        """Answer a guest app's paste."""
        self._post(lambda: self.server.provide(token, clip_type, data))

    def fetch(self, selection: int, clip_type: int, token: int) -> None:
        """Convert the guest selection to ``clip_type``."""
        self._post(lambda: self._fetch(selection, clip_type, token))

    def stop(self) -> None:
        """Release ownership, stop the thread and close the connection."""
        if self._thread is None:
            self.dpy.close()
            return
        self._post(self._shutdown)
        self._thread.join(timeout=5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # --- worker thread ------------------------------------------------------------------------
    def atom(self, name: str) -> int:
        """Intern (cached)."""
        value = self._atoms.get(name)
        if value is None:
            value = self.dpy.intern_atom(name)
            self._atoms[name] = value
            self._names[value] = name
        return value

    def atom_name(self, atom: int) -> str:
        """Atom name (cached)."""
        name = self._names.get(atom)
        if name is None:
            try:
                name = self.dpy.get_atom_name(atom)
            except error.XError:
                name = ""
            self._names[atom] = name
            self._atoms.setdefault(name, atom)
        return name

    def _on_x_error(self, err: Any, *_: Any) -> None:
        """Errors of requests without replies (a requestor window that vanished mid-paste)."""
        log.info("X error: %s", err, extra={"event": "clipboard.x11_error"})
        bad = getattr(err, "resource_id", 0)
        for key in [k for k in self.server.outgoing if k[0] == bad]:
            del self.server.outgoing[key]

    def _post(self, command: Callable[[], None]) -> None:
        self._commands.put(command)
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    def _watch_owners(self) -> None:
        """Follow owner changes; a selection that already has an owner is announced now."""
        for sel, atom in self.sel_atom.items():
            self.dpy.xfixes_select_selection_input(self.window, atom, OWNER_MASK)
            owner = self.dpy.get_selection_owner(atom)
            if _wid(owner) not in (0, self.window.id):
                self._queue_job(_Job(sel, "TARGETS"))
        self.dpy.flush()

    def _run(self) -> None:
        try:
            self._watch_owners()
        except error.ConnectionClosedError:
            self._running = False
            if self.events is not None:
                self.events.lost("X connection closed")
            return
        fd = self.dpy.fileno()
        while self._running:
            try:
                self._drain_commands()
                while self._running and self.dpy.pending_events():
                    self._dispatch(self.dpy.next_event())
                self._expire_jobs()
                self.dpy.flush()
                if self._stopping():
                    break
                if self.dpy.pending_events():
                    continue  # flush() may have queued events: never sleep on them
                readable, _, _ = select.select([fd, self._wake_r], [], [], 0.5)
                if self._wake_r in readable:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
            except error.ConnectionClosedError:
                self._running = False
                if self.events is not None:
                    self.events.lost("X connection closed")
            except error.XError as err:  # a vanished requestor window: log and carry on
                log.info("X error: %s", err, extra={"event": "clipboard.x11_error"})
            except Exception:  # loop boundary: one bad event must not end clipboard sharing
                log.exception("clipboard worker error", extra={"event": "clipboard.x11_bug"})
        with contextlib.suppress(error.ConnectionClosedError, OSError):
            self.dpy.close()

    def _stopping(self) -> bool:
        return not self._running

    def _drain_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command()

    def _shutdown(self) -> None:
        for sel in list(self.server.owned):
            self.server.release(sel)
        self.dpy.flush()
        self._running = False

    # --- client-owned selections --------------------------------------------------------------
    # --- guest-owned selections ---------------------------------------------------------------
    def _on_owner_change(self, ev: Any) -> None:
        selection = self.sel_of_atom.get(ev.selection)
        if selection is None:
            return
        owner = _wid(ev.owner)
        if owner == self.window.id:
            return
        self.offered.pop(selection, None)
        for job in list(self.jobs[selection]):  # conversions of the previous owner are void
            if job.token >= 0 and self.events is not None:
                self.events.guest_data(job.token, job.want, None)
        self.jobs[selection].clear()
        if owner != 0:
            self.server.drop(selection)  # another app replaced the client's data
        if owner == 0:
            if self.events is not None:
                self.events.guest_release(selection)
            return
        self._queue_job(_Job(selection, "TARGETS"))

    def _fetch(self, selection: int, clip_type: int, token: int) -> None:
        picked = pick_target(clip_type, self.offered.get(selection, []))
        if picked is None or selection in self.server.owned:
            if self.events is not None:
                self.events.guest_data(token, clip_type, None)
            return
        target, have = picked
        self._queue_job(_Job(selection, target, token, have, clip_type))

    def _queue_job(self, job: _Job) -> None:
        pending = self.jobs[job.selection]
        pending.append(job)
        if len(pending) == 1:
            self._begin(job)

    def _begin(self, job: _Job) -> None:
        job.deadline = time.monotonic() + FETCH_TIMEOUT_S
        self.window.delete_property(self.prop[job.selection])
        self.window.convert_selection(
            self.sel_atom[job.selection],
            self.atom(job.target),
            self.prop[job.selection],
            X.CurrentTime,
        )

    def _finish(self, selection: int, data: bytes | None, ptype: int = 0) -> None:
        pending = self.jobs[selection]
        if not pending:
            return
        job = pending.popleft()
        if job.token < 0:
            if data is not None and ptype == Xatom.ATOM:
                count = len(data) // 4
                atoms = [int.from_bytes(data[i * 4 : i * 4 + 4], "little") for i in range(count)]
                self.offered[selection] = [self.atom_name(a) for a in atoms]
                types = owner_types(self.offered[selection])
                if types and self.events is not None:
                    self.events.guest_grab(selection, types)
        elif self.events is not None:
            if data is not None and job.have != job.want:
                try:
                    data = convert(data, job.have, job.want)
                except ImageError as err:
                    log.warning("conversion failed: %s", err, extra={"event": "clipboard.convert"})
                    data = None
            self.events.guest_data(job.token, job.want, data)
        if pending:
            self._begin(pending[0])

    def _on_selection_notify(self, ev: Any) -> None:
        selection = self.sel_of_atom.get(ev.selection)
        if selection is None or not self.jobs[selection]:
            return
        if ev.property == X.NONE:
            self._finish(selection, None)
            return
        prop = self._take_property(ev.property)
        if prop is None:
            self._finish(selection, None)
        elif prop.property_type == self.atom("INCR"):
            job = self.jobs[selection][0]
            job.incr, job.chunks = True, []
            job.deadline = time.monotonic() + FETCH_TIMEOUT_S
        else:
            self._finish(selection, _bytes(prop), prop.property_type)

    def _on_property(self, ev: Any) -> None:
        if _wid(ev.window) != self.window.id:
            self.server.advance_outgoing(ev)
            return
        selection = next((s for s, p in self.prop.items() if p == ev.atom), None)
        if selection is None or ev.state != X.PropertyNewValue or not self.jobs[selection]:
            return
        job = self.jobs[selection][0]
        if not job.incr:
            return
        prop = self._take_property(ev.atom)
        chunk = _bytes(prop) if prop is not None else b""
        job.deadline = time.monotonic() + FETCH_TIMEOUT_S
        if chunk:
            job.chunks.append(chunk)
        else:
            self._finish(selection, b"".join(job.chunks), prop.property_type if prop else 0)

    def _take_property(self, atom: int) -> Any:
        """Read and delete a property in 256 KiB windows (python-xlib copies its receive
        buffer on every recv, so one multi-MiB reply costs far more than a few small ones)."""
        window_longs = READ_WINDOW // 4
        first = self.window.get_property(atom, X.AnyPropertyType, 0, window_longs, delete=False)
        if first is None or not first.bytes_after or first.format != 8:
            self.window.delete_property(atom)
            return first
        parts = [_bytes(first)]
        offset = len(parts[0])
        while True:
            more = self.window.get_property(atom, X.AnyPropertyType, offset // 4, window_longs, delete=False)
            if more is None:
                break
            parts.append(_bytes(more))
            offset += len(parts[-1])
            if not more.bytes_after or not parts[-1]:
                break
        self.window.delete_property(atom)
        first.value = b"".join(parts)
        return first

    def _expire_jobs(self) -> None:
        self.server.expire()
        now = time.monotonic()
        for selection, pending in self.jobs.items():
            if pending and pending[0].deadline and pending[0].deadline < now:
                log.warning("guest owner did not answer", extra={"event": "clipboard.timeout"})
                self._finish(selection, None)

    def _dispatch(self, ev: Any) -> None:
        if isinstance(ev, xfixes.SelectionNotify):
            self._on_owner_change(ev)
        elif ev.type == X.SelectionRequest:
            self.server.on_selection_request(ev)
        elif ev.type == X.SelectionNotify:
            self._on_selection_notify(ev)
        elif ev.type == X.PropertyNotify:
            self._on_property(ev)
        elif ev.type == X.SelectionClear:
            selection = self.sel_of_atom.get(ev.atom)
            if selection is not None:
                self.server.drop(selection)


_wid = wid


def _bytes(prop: Any) -> bytes:
    value = prop.value
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if prop.format == 32:
        return b"".join(int(v).to_bytes(4, "little") for v in value)
    if prop.format == 16:
        return b"".join(int(v).to_bytes(2, "little") for v in value)
    return bytes(value)

"""Wayland clipboard backend: ext-data-control-v1 (preferred) or wlr-data-control-unstable-v1.

Uses the pure-Python wire client in :mod:`wlwire`. A worker thread polls the compositor
socket, pipes being read (guest data for the client) and pipes being written (client data
for guest apps). Compositors without data-control (GNOME/Mutter, weston) get a clear
"unsupported" from :meth:`WaylandClipboard.connect`. Must not import Xlib or the node.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from concierge.actors.clipboard.backend import BackendEvents
from concierge.actors.clipboard.formats import advertised_targets, owner_types, pick_target
from concierge.actors.clipboard.images import ImageError, convert
from concierge.actors.clipboard.wlwire import WaylandConnection, WaylandError, socket_path

log = logging.getLogger(__name__)

MARKER = "application/x-concierge-source"
READ_TIMEOUT_S = 10.0
MANAGERS = (("ext_data_control_manager_v1", 1), ("zwlr_data_control_manager_v1", 2))
# device events: data_offer(new_id), selection(?object), finished, primary_selection(?object)
DEVICE_EVENTS = ["n", "o", "", "o"]


@dataclass(slots=True)
class _Read:
    token: int
    have: int
    want: int
    deadline: float
    chunks: list[bytes] = field(default_factory=list)


class WaylandClipboard:
    """Data-control client acting for the SPICE client in a Wayland session."""

    name = "wayland"

    def __init__(self, conn: WaylandConnection, manager: int, device: int, primary: bool) -> None:
        self.conn = conn
        self.manager = manager
        self.device = device
        self.selections: tuple[int, ...] = (0, 1) if primary else (0,)
        self.events: BackendEvents | None = None
        self.offers: dict[int, list[str]] = {}
        self.current: dict[int, int] = {}  # guest offer per selection
        self.sources: dict[int, tuple[int, dict[str, tuple[int, int]]]] = {}  # sel -> (id, targets)
        self.sends: dict[int, tuple[int, int, int]] = {}  # token -> (fd, have, want)
        self.reads: dict[int, _Read] = {}
        self.writes: dict[int, memoryview] = {}
        self._token = 1 << 30
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._running = False
        self._thread: threading.Thread | None = None
        conn.register(
            device,
            DEVICE_EVENTS,
            {
                0: lambda a: self._on_data_offer(a[0]),
                1: lambda a: self._on_selection(0, a[0]),
                2: lambda a: log.warning("data-control device finished", extra={"event": "clipboard.wl_gone"}),
                3: lambda a: self._on_selection(1, a[0]),
            },
        )

    @classmethod
    def connect(cls, display: str, env: dict[str, str] | None = None) -> WaylandClipboard | None:
        """Connect and bind data-control; None (logged) when the compositor offers none."""
        conn = WaylandConnection(socket_path(display, env if env is not None else os.environ))
        found: dict[str, tuple[int, int]] = {}
        done: list[bool] = []

        def add_global(name: int, iface: str, version: int) -> None:
            found.setdefault(iface, (name, version))

        try:
            registry = conn.get_registry(add_global)
            conn.sync(lambda: done.append(True))
            deadline = time.monotonic() + 5
            while not done:
                if time.monotonic() > deadline:
                    raise WaylandError("no answer to wl_display.sync")
                select.select([conn.fileno()], [], [], 0.5)
                conn.read_events()
            manager_iface = next((m for m in MANAGERS if m[0] in found), None)
            if manager_iface is None or "wl_seat" not in found:
                log.warning(
                    "compositor offers no ext/wlr data-control: clipboard unsupported",
                    extra={"event": "clipboard.unsupported", "globals": ",".join(sorted(found))},
                )
                conn.close()
                return None
            iface, max_version = manager_iface
            name, version = found[iface]
            version = min(version, max_version)
            seat = conn.bind(registry, found["wl_seat"][0], "wl_seat", 1)
            conn.register(seat, ["u", "s"], {})
            manager = conn.bind(registry, name, iface, version)
            device = conn.new_id()
            instance = cls(conn, manager, device, primary=iface.startswith("ext") or version >= 2)
            conn.request(manager, 1, "no", device, seat)  # get_data_device
            log.info("wayland clipboard via %s v%d", iface, version, extra={"event": "clipboard.wl"})
            return instance
        except (WaylandError, OSError):
            conn.close()
            raise

    # --- public, thread-safe ------------------------------------------------------------------
    def start(self, events: BackendEvents) -> None:
        """Start the worker; the compositor then reports the current selections."""
        self.events = events
        self._running = True
        self._thread = threading.Thread(target=self._run, name="clipboard-wl", daemon=True)
        self._thread.start()

    def grab(self, selection: int, types: list[int]) -> None:
        """Set a data source for the client's types."""
        self._post(lambda: self._grab(selection, types))

    def release(self, selection: int) -> None:
        """Clear the selection if the client's source owns it."""
        self._post(lambda: self._release(selection))

    def provide(self, token: int, clip_type: int, data: bytes | None) -> None:
        """Write the client's data to the guest app's pipe."""
        self._post(lambda: self._provide(token, clip_type, data))

    def fetch(self, selection: int, clip_type: int, token: int) -> None:
        """Read the guest offer in ``clip_type``."""
        self._post(lambda: self._fetch(selection, clip_type, token))

    def stop(self) -> None:
        """Drop our sources, stop the worker, close every fd."""
        if self._thread is not None:
            self._post(self._shutdown)
            self._thread.join(timeout=5)
        for fd in [*self.reads, *self.writes, *(s[0] for s in self.sends.values())]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.conn.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # --- worker -------------------------------------------------------------------------------
    def _post(self, command: Callable[[], None]) -> None:
        self._commands.put(command)
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    def _run(self) -> None:
        while self._running:
            try:
                while True:
                    try:
                        self._commands.get_nowait()()
                    except queue.Empty:
                        break
                if self._stopping():
                    break
                readable, writable, _ = select.select(
                    [self.conn.fileno(), self._wake_r, *self.reads], list(self.writes), [], 0.5
                )
                if self._wake_r in readable:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                if self.conn.fileno() in readable:
                    self.conn.read_events()
                for fd in readable:
                    if fd in self.reads:
                        self._read(fd)
                for fd in writable:
                    self._write(fd)
                self._expire()
            except WaylandError as err:
                self._running = False
                if self.events is not None:
                    self.events.lost(f"wayland: {err}")
            except Exception:  # loop boundary: one bad event must not end clipboard sharing
                log.exception("wayland clipboard worker error", extra={"event": "clipboard.wl_bug"})

    def _stopping(self) -> bool:
        return not self._running

    def _shutdown(self) -> None:
        for sel in list(self.sources):
            self._release(sel)
        self._running = False

    # --- compositor events --------------------------------------------------------------------
    def _on_data_offer(self, oid: int) -> None:
        self.offers[oid] = []
        self.conn.register(oid, ["s"], {0: lambda a: self.offers[oid].append(a[0])})

    def _on_selection(self, sel: int, oid: int) -> None:
        old = self.current.pop(sel, 0)
        if old and old != oid:
            self._destroy_offer(old)
        if not oid:
            if sel not in self.sources and self.events is not None:
                self.events.guest_release(sel)
            return
        mimes = self.offers.get(oid, [])
        if MARKER in mimes:  # our own source coming back
            self._destroy_offer(oid)
            return
        self.current[sel] = oid
        self._drop_source(sel)
        types = owner_types(mimes)
        if types and self.events is not None:
            self.events.guest_grab(sel, types)

    def _destroy_offer(self, oid: int) -> None:
        if self.offers.pop(oid, None) is not None and oid not in self.current.values():
            self.conn.request(oid, 1)
            self.conn.forget(oid)

    # --- client-owned -------------------------------------------------------------------------
    def _grab(self, sel: int, types: list[int]) -> None:
        if sel not in self.selections:
            return
        self._drop_source(sel)
        targets = advertised_targets(types)
        source = self.conn.new_id()
        self.conn.request(self.manager, 0, "n", source)
        self.conn.register(
            source,
            ["sh", ""],
            {
                0: lambda a: self._on_send(sel, source, a[0], a[1]),
                1: lambda a: self._on_cancelled(sel, source),
            },
        )
        for mime in [*targets, MARKER]:
            self.conn.request(source, 0, "s", mime)
        self.sources[sel] = (source, targets)
        self.conn.request(self.device, 0 if sel == 0 else 2, "?o", source)

    def _release(self, sel: int) -> None:
        if sel in self.sources:
            self.conn.request(self.device, 0 if sel == 0 else 2, "?o", 0)
            self._drop_source(sel)

    def _drop_source(self, sel: int) -> None:
        entry = self.sources.pop(sel, None)
        if entry is not None:
            self.conn.request(entry[0], 1)
            self.conn.forget(entry[0])

    def _on_cancelled(self, sel: int, source: int) -> None:
        if self.sources.get(sel, (0,))[0] == source:
            self.sources.pop(sel)
        self.conn.request(source, 1)
        self.conn.forget(source)

    def _on_send(self, sel: int, source: int, mime: str, fd: int) -> None:
        entry = self.sources.get(sel)
        if entry is None or entry[0] != source or mime not in entry[1] or self.events is None:
            os.close(fd)
            return
        have, want = entry[1][mime]
        self._token += 1
        self.sends[self._token] = (fd, have, want)
        self.events.app_request(sel, have, self._token)

    def _provide(self, token: int, clip_type: int, data: bytes | None) -> None:
        entry = self.sends.pop(token, None)
        if entry is None:
            return
        fd, have, want = entry
        if data is None or clip_type != have:
            os.close(fd)
            return
        try:
            data = convert(data, have, want)
        except ImageError as err:
            log.warning("image conversion failed: %s", err, extra={"event": "clipboard.convert"})
            os.close(fd)
            return
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self.writes[fd] = memoryview(data)

    def _write(self, fd: int) -> None:
        view = self.writes[fd]
        try:
            written = os.write(fd, view[: 1 << 20])
        except BlockingIOError:
            return
        except OSError:  # the app stopped reading (EPIPE): drop the rest
            written = len(view)
        view = view[written:]
        if view:
            self.writes[fd] = view
        else:
            del self.writes[fd]
            os.close(fd)

    # --- guest-owned --------------------------------------------------------------------------
    def _fetch(self, sel: int, clip_type: int, token: int) -> None:
        oid = self.current.get(sel)
        picked = pick_target(clip_type, self.offers.get(oid, [])) if oid else None
        if picked is None or oid is None:
            if self.events is not None:
                self.events.guest_data(token, clip_type, None)
            return
        mime, have = picked
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.conn.request(oid, 0, "sh", mime, write_fd)
        os.close(write_fd)
        self.reads[read_fd] = _Read(token, have, clip_type, time.monotonic() + READ_TIMEOUT_S)

    def _read(self, fd: int) -> None:
        job = self.reads[fd]
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            return
        if chunk:
            job.chunks.append(chunk)
            return
        del self.reads[fd]
        os.close(fd)
        data: bytes | None = b"".join(job.chunks)
        if job.have != job.want and data is not None:
            try:
                data = convert(data, job.have, job.want)
            except ImageError:
                data = None
        if self.events is not None:
            self.events.guest_data(job.token, job.want, data)

    def _expire(self) -> None:
        now = time.monotonic()
        for fd, job in list(self.reads.items()):
            if job.deadline < now:
                del self.reads[fd]
                os.close(fd)
                log.warning("guest app did not send its data", extra={"event": "clipboard.timeout"})
                if self.events is not None:
                    self.events.guest_data(job.token, job.want, None)

"""X11 layout backend: RandR through python-xlib (no xrandr subprocess per event).

Called from the display actor's thread only (one Xlib connection, not shared).
Must not import the node, D-Bus or Wayland code.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from typing import Any

from Xlib import X, display, error
from Xlib.ext import randr

from concierge.actors.display.layout import Monitor, bounding_box, cvt_reduced_timing
from concierge.errors import UnavailableError

log = logging.getLogger(__name__)

Rect = dict[str, int]


class RandrBackend:
    """Reads and sets the RandR layout of one X display."""

    name = "x11"

    def __init__(self, display_name: str | None, *, refresh_hz: int = 60, dpi: int = 96) -> None:
        try:
            self.dpy: Any = display.Display(display_name or None)
        except (error.DisplayError, OSError) as err:
            raise UnavailableError(f"cannot open X display {display_name!r}: {err}") from err
        if not self.dpy.has_extension("RANDR"):
            self.dpy.close()
            raise UnavailableError("X server has no RandR")
        self.root = self.dpy.screen().root
        self._errors: list[Any] = []
        self.dpy.set_error_handler(lambda err, *_: self._errors.append(err))
        self._watch: Any = None
        self._snapshot: _Snapshot | None = None
        self._size_range = self.root.xrandr_get_screen_size_range()
        self.refresh_hz = refresh_hz
        self.dpi = dpi

    def close(self) -> None:
        """Close the X connection(s)."""
        self.dpy.close()
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    # --- change notifications (bridge thread only; a connection of its own) -------------------
    def watch_fd(self) -> int | None:
        """An fd that becomes readable when the RandR layout changes (any client, hotplug)."""
        watch: Any = display.Display(self.dpy.get_display_name())
        watch.screen().root.xrandr_select_input(
            randr.RRScreenChangeNotifyMask | randr.RRCrtcChangeNotifyMask | randr.RROutputChangeNotifyMask
        )
        watch.flush()
        self._watch = watch
        return int(watch.fileno())

    def drain_changes(self) -> bool:
        """Consume queued notifications without blocking; True if the layout may have changed."""
        changed = False
        if self._watch is None:
            return False
        while self._watch.pending_events():
            self._watch.next_event()
            changed = True
        return changed

    # --- reading --------------------------------------------------------------------------------
    def output_count(self) -> int:
        """Number of RandR outputs (connected or not): the cap on monitors."""
        return len(self.root.xrandr_get_screen_resources_current().outputs)

    def _snap(self) -> _Snapshot:
        """Resources plus the active outputs, in 2 round trips when RandR 1.5 is there."""
        res = self.root.xrandr_get_screen_resources_current()
        snap = _Snapshot(self.dpy, res)
        try:
            monitors = self.root.xrandr_get_monitors().monitors
        except (error.XError, AttributeError):
            monitors = None
        if monitors is None:  # RandR < 1.5: ask every output
            for index in range(len(snap.outputs)):
                info = snap.info(index)
                crtc = snap.crtc(info.crtc) if info.crtc else None
                if crtc is not None and crtc.mode and crtc.width and crtc.height:
                    snap.active[index] = _rect(crtc.x, crtc.y, crtc.width, crtc.height)
            return snap
        index_of = {oid: i for i, oid in enumerate(snap.outputs)}
        for mon in monitors:
            for oid in mon.crtcs:  # python-xlib names the monitor's *outputs* list "crtcs"
                if oid in index_of:
                    snap.active[index_of[oid]] = _rect(mon.x, mon.y, mon.width_in_pixels, mon.height_in_pixels)
        return snap

    def current(self) -> dict[int, Rect]:
        """Active outputs by index: {index: {x, y, width, height}} (kept as a snapshot that an
        immediately following :meth:`apply` reuses instead of asking the server again)."""
        self._snapshot = self._snap()
        return dict(self._snapshot.active)

    # --- writing --------------------------------------------------------------------------------
    def apply(self, placements: Sequence[tuple[int, Monitor]], before: dict[int, Rect] | None = None) -> None:
        """Set ``placements``; on failure put ``before`` (the previous layout) back and raise
        ValueError. Callers that just read the layout pass it to save the round trips."""
        if before is None:
            before = self.current()
        snapshot, self._snapshot = self._snapshot, None
        try:
            try:
                self._apply(placements, snapshot)
            except ValueError:
                if snapshot is None:
                    raise
                self._apply(placements)  # the snapshot may have gone stale: once more, fresh
        except (ValueError, error.XError, struct.error) as err:
            old = [(i, Monitor(i, r["x"], r["y"], r["width"], r["height"])) for i, r in before.items()]
            try:
                if old:
                    self._apply(old)
            except (ValueError, error.XError, struct.error) as again:
                log.warning("could not restore layout: %s", again, extra={"event": "display.restore"})
            raise ValueError(str(err)) from err

    def _apply(self, placements: Sequence[tuple[int, Monitor]], snap: _Snapshot | None = None) -> None:
        """Set exactly ``placements`` (output index, monitor); other outputs are turned off.
        A stale snapshot makes the server refuse (InvalidConfigTime) and the caller retry."""
        self._errors.clear()
        snap = snap or self._snap()
        ts = snap.res.config_timestamp
        wanted = {index: mon for index, mon in placements if index < len(snap.outputs)}
        if len(wanted) != len(placements):
            raise ValueError(f"only {len(snap.outputs)} outputs, layout needs more")
        width, height = bounding_box(list(wanted.values()))
        size_range = self._size_range
        if not (size_range.min_width <= width <= size_range.max_width) or not (
            size_range.min_height <= height <= size_range.max_height
        ):
            raise ValueError(f"desktop {width}x{height} outside {size_range.max_width}x{size_range.max_height}")
        # 1. turn off CRTCs that are not wanted or would not fit the new screen
        crtc_of: dict[int, int] = {}
        for index, rect in snap.active.items():
            info = snap.info(index)
            if not info.crtc:
                continue
            fits = rect["x"] + rect["width"] <= width and rect["y"] + rect["height"] <= height
            if index not in wanted or not fits:
                self._check(self.dpy.xrandr_set_crtc_config(info.crtc, ts, 0, 0, 0, randr.Rotate_0, []))
            else:
                crtc_of[index] = info.crtc
        # 2. resize the screen (millimetres from the physical-size tail, else from dpi)
        mm_w = sum(m.width_mm for m in wanted.values()) or round(width * 25.4 / self.dpi)
        mm_h = max(m.height_mm for m in wanted.values()) or round(height * 25.4 / self.dpi)
        geometry = self.root.get_geometry()
        if (geometry.width, geometry.height) != (width, height):
            self.root.xrandr_set_screen_size(width, height, mm_w, mm_h)
            self.dpy.sync()
        if self._errors:
            raise ValueError(f"screen size {width}x{height} refused: {self._errors[0]}")
        # 3. set every wanted CRTC, creating modes as needed
        used = set(crtc_of.values())
        for index, mon in sorted(wanted.items()):
            oid, info = snap.outputs[index], snap.info(index)
            crtc_id = crtc_of.get(index) or next((c for c in info.crtcs if c not in used), 0)
            if not crtc_id:
                raise ValueError(f"no free CRTC for output {info.name}")
            used.add(crtc_id)
            mode_id = self._mode_for(oid, info, snap.res.modes, mon.width, mon.height)
            if (
                index in crtc_of
                and snap.active[index] == _rect(mon.x, mon.y, mon.width, mon.height)
                and snap.crtc(crtc_id).mode == mode_id
            ):
                continue  # already showing exactly this
            self._check(self.dpy.xrandr_set_crtc_config(crtc_id, ts, mon.x, mon.y, mode_id, randr.Rotate_0, [oid]))
        primary = min(wanted)
        self.root.xrandr_set_output_primary(snap.outputs[primary])
        self.dpy.sync()
        if self._errors:
            raise ValueError(f"X refused the layout: {self._errors[0]}")

    def _mode_for(self, oid: int, info: Any, modes: Any, width: int, height: int) -> int:
        """A mode of exactly width x height on the output; added or created when missing."""
        for mode_id in info.modes:
            mode = next((m for m in modes if m.id == mode_id), None)
            if mode is not None and (mode.width, mode.height) == (width, height):
                return int(mode_id)
        existing = next((m.id for m in modes if (m.width, m.height) == (width, height)), None)
        if existing is None:
            name = f"{width}x{height}-cc"
            timing = cvt_reduced_timing(width, height, self.refresh_hz)
            if timing["dot_clock"] >= 1 << 32:
                raise ValueError(f"mode {width}x{height} needs a dot clock beyond RandR's range")
            spec = dict(timing, id=0, name_length=len(name), flags=randr.HSyncPositive | randr.VSyncNegative)
            existing = self.root.xrandr_create_mode(spec, name).mode
            log.info("created mode %s", name, extra={"event": "display.mode_created"})
        self.dpy.xrandr_add_output_mode(oid, existing)
        return int(existing)

    @staticmethod
    def _check(reply: Any) -> None:
        status = getattr(reply, "status", 0)
        if status != randr.SetConfigSuccess:
            raise ValueError(f"RRSetCrtcConfig failed with status {status}")


class _Snapshot:
    """One reading of the RandR state; output and CRTC details are fetched only when used."""

    def __init__(self, dpy: Any, res: Any) -> None:
        self.dpy = dpy
        self.res = res
        self.outputs: list[int] = list(res.outputs)
        self.active: dict[int, Rect] = {}
        self._infos: dict[int, Any] = {}
        self._crtcs: dict[int, Any] = {}

    def info(self, index: int) -> Any:
        """GetOutputInfo of output ``index`` (cached)."""
        if index not in self._infos:
            self._infos[index] = self.dpy.xrandr_get_output_info(self.outputs[index], self.res.config_timestamp)
        return self._infos[index]

    def crtc(self, crtc_id: int) -> Any:
        """GetCrtcInfo (cached)."""
        if crtc_id not in self._crtcs:
            self._crtcs[crtc_id] = self.dpy.xrandr_get_crtc_info(crtc_id, self.res.config_timestamp)
        return self._crtcs[crtc_id]


def _rect(x: int, y: int, width: int, height: int) -> Rect:
    return {"x": x, "y": y, "width": width, "height": height}


def is_x_error(err: BaseException) -> bool:
    """True for the python-xlib errors a bad layout can raise (BadMatch, BadValue...)."""
    return isinstance(err, error.XError | error.ConnectionClosedError)


__all__ = ["RandrBackend", "X", "is_x_error"]

"""DisplayNode: applies SPICE MONITORS_CONFIG in the user's session and reports the geometry.

Backends: X11 RandR (python-xlib), GNOME Mutter DisplayConfig (jeepney), sway IPC, or none
(an honest ERROR reply). Backend calls run in the ServiceNode actor thread, never on the bridge.
Must not import clipboard, effects or file-transfer code.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Protocol

import msgspec

from concierge.actors.display.layout import (
    LayoutError,
    Monitor,
    output_map,
    parse_monitors_config,
)
from concierge.actors.display.settings import DisplaySettings
from concierge.actors.vdagent import REPLY_ERROR, REPLY_SUCCESS, MsgType, caps_from_body, send
from concierge.actors.xlib_modules import XLIB_AT_CONNECT
from concierge.errors import ActorError, ConfigError, ErrorCode
from concierge.runtime.node import Incoming
from concierge.runtime.service import ServiceNode, handler

log = logging.getLogger(__name__)
Rect = dict[str, int]


class LayoutBackend(Protocol):
    """What the node needs from a layout backend."""

    name: str

    def output_count(self) -> int: ...
    def current(self) -> dict[int, Rect]: ...
    def apply(self, placements: list[tuple[int, Monitor]], before: dict[int, Rect] | None = None) -> None: ...
    def close(self) -> None: ...
    def watch_fd(self) -> int | None: ...
    def drain_changes(self) -> bool: ...


def pick_backend(settings: DisplaySettings, env: Mapping[str, str]) -> LayoutBackend | None:
    """Choose the backend for this session; None means layout changes are unsupported here."""
    choice = settings.backend
    if choice == "auto":
        desktop = env.get("XDG_CURRENT_DESKTOP", "").upper()
        if "GNOME" in desktop and env.get("DBUS_SESSION_BUS_ADDRESS"):
            choice = "mutter"
        elif env.get("SWAYSOCK") or settings.sway_socket:
            choice = "sway"
        elif env.get("WAYLAND_DISPLAY"):
            choice = "none"  # a RandR call on Xwayland changes nothing the compositor shows
        elif settings.x11_display or env.get("DISPLAY"):
            choice = "x11"
        else:
            choice = "none"
    if choice == "x11":
        from concierge.actors.display.x11 import RandrBackend  # noqa: PLC0415 - Xlib only if X11

        return RandrBackend(
            settings.x11_display or env.get("DISPLAY"),
            refresh_hz=settings.refresh_hz,
            dpi=settings.dpi,
        )
    if choice == "mutter":
        from concierge.actors.display.mutter import MutterBackend  # noqa: PLC0415 - ditto D-Bus

        return MutterBackend(method=settings.mutter_method)
    if choice == "sway":
        from concierge.actors.display.sway import SwayBackend  # noqa: PLC0415 - sway only

        return SwayBackend(settings.sway_socket or env.get("SWAYSOCK", ""))
    if choice == "none":
        return None
    raise ConfigError(f"unknown display backend {choice!r}", key="actors.display.settings.backend")


class DisplayNode(ServiceNode):
    """Monitor layout for one graphical session."""

    preload = ("concierge.actors.display.x11", *XLIB_AT_CONNECT)  # the common backend

    def on_start(self) -> None:
        """Pick the backend and report the current geometry to the input actor."""
        try:
            self.settings = msgspec.convert(dict(self.ctx.settings), DisplaySettings)
        except msgspec.ValidationError as err:
            raise ConfigError(str(err), key=f"actors.{self.ctx.actor_id}.settings") from err
        self.backend = pick_backend(self.settings, os.environ)
        self.display_to_output: dict[int, int] = {}
        self.last_geometry: list[Rect] | None = None
        self._watched: int | None = None
        self._debounce: Any = None
        self.client_caps = 0
        if self.backend is None:
            log.warning(
                "no layout backend for this session: monitor configs will be refused",
                extra={"event": "display.unsupported"},
            )
            self.ctx.set_health("degraded", "monitor layout unsupported in this session")
        else:
            log.info("display backend %s", self.backend.name, extra={"event": "display.backend"})
            self._watched = self.backend.watch_fd()
            if self._watched is not None:
                self.ctx.watch_fd(self._watched, self._on_change)
            if self._actor is not None:
                self._actor.tell(Incoming(kind="cast", type="display.report", body=None, src="self"))

    def _on_change(self, revents: int) -> None:
        """Bridge thread: a RandR notification; report once the burst is over."""
        del revents
        if self.backend is None or not self.backend.drain_changes():
            return
        if self._debounce is not None:
            self._debounce.cancel()
        self._debounce = self.ctx.call_later(0.05, self._report_soon)

    def _report_soon(self) -> None:
        self._debounce = None
        if self._actor is not None:
            self._actor.tell(Incoming(kind="cast", type="display.report", body=None, src="self"))

    def on_stop(self) -> None:
        """Close the backend's connection."""
        if self._watched is not None:
            self.ctx.unwatch_fd(self._watched)
        if self.backend is not None:
            self.backend.close()

    @handler("display.report")
    def on_report(self, msg: Incoming) -> None:
        """Internal: send the current geometry (at start and after RandR notifications)."""
        del msg
        self._report()

    @handler("display.geometry")
    def on_geometry(self, msg: Incoming) -> dict[str, Any]:
        """The current layout as input.geometry would carry it."""
        del msg
        return {"monitors": self._geometry()}

    @handler("spice.announce_capabilities")
    def on_caps(self, msg: Incoming) -> None:
        """Remember the client's caps."""
        self.client_caps = caps_from_body(msg.body or {})

    @handler("spice.graphics_device_info")
    def on_device_info(self, msg: Incoming) -> None:
        """Map SPICE display ids to outputs (device_display_id = connector index)."""
        try:
            self.display_to_output = output_map(msg.body or {})
        except LayoutError as err:
            raise ActorError(ErrorCode.BAD_REQUEST, f"bad GRAPHICS_DEVICE_INFO: {err}") from err
        log.info("display map %s", self.display_to_output, extra={"event": "display.map"})

    @handler("spice.monitors_config")
    def on_monitors_config(self, msg: Incoming) -> dict[str, Any]:
        """Apply the layout; REPLY SUCCESS only if it was applied; then report the geometry."""
        self.ctx.count("display.configs")
        try:
            monitors, _disabled = parse_monitors_config(msg.body or {})
        except LayoutError as err:
            self._reply(False)
            raise ActorError(ErrorCode.BAD_REQUEST, f"bad MONITORS_CONFIG: {err}") from err
        if self.backend is None:
            self._reply(False)
            raise ActorError(ErrorCode.UNAVAILABLE, "monitor layout is unsupported in this session")
        placements = [(self.display_to_output.get(m.display_id, m.display_id), m) for m in monitors]
        applied = False
        try:
            before = self.backend.current()
            wanted = {i: {"x": m.x, "y": m.y, "width": m.width, "height": m.height} for i, m in placements}
            if before != wanted:
                self.backend.apply(placements, before)
            applied = True
        except (ValueError, OSError) as err:
            log.warning("layout not applied: %s", err, extra={"event": "display.apply_failed"})
        except Exception as err:  # python-xlib raises XError subclasses of Exception directly
            from concierge.actors.display.x11 import is_x_error  # noqa: PLC0415 - X11 only

            if not is_x_error(err):
                raise
            log.warning("layout not applied: %s", err, extra={"event": "display.apply_failed"})
        self._reply(applied)
        geometry = self._report()
        return {"applied": applied, "monitors": geometry}

    # --- internals ----------------------------------------------------------------------------
    def _reply(self, ok: bool) -> None:
        send(
            self.ctx,
            "reply",
            {"type": int(MsgType.MONITORS_CONFIG), "error": REPLY_SUCCESS if ok else REPLY_ERROR},
        )

    def _geometry(self) -> list[Rect]:
        """Monitors in display-id order; disabled ids below the highest one are 0x0."""
        if self.backend is None:
            return []
        current = self.backend.current()
        to_display = {out: disp for disp, out in self.display_to_output.items()}
        by_display: dict[int, Rect] = {}
        for index in sorted(current):
            by_display[to_display.get(index, index)] = current[index]
        if not by_display:
            return []
        empty = {"x": 0, "y": 0, "width": 0, "height": 0}
        return [by_display.get(i, empty) for i in range(max(by_display) + 1)]

    def _report(self) -> list[Rect]:
        """Tell the input actor the layout, unless it already has exactly this one."""
        geometry = self._geometry()
        if geometry and geometry != self.last_geometry:
            self.last_geometry = geometry
            self.ctx.cast(self.settings.geometry_to, "input.geometry", {"monitors": geometry})
        return geometry

"""InputNode: MOUSE_STATE in, absolute tablet reports out, on the bridge thread.

Why no pykka hop: one report is a dict lookup, a few comparisons and one non-blocking
``write()`` of at most 216 bytes (a few microseconds). Handing it to an actor thread would add a
queue and a thread wake-up (tens of microseconds) to the one latency-critical path, and this
process does nothing else that could delay its bridge. Ordering is then the order of arrival.

Coalescing: reports are written at once. Only when the sink is behind (EAGAIN) are states
queued; a new state then *replaces* the queued tail if both carry the same buttons (a pure
move), so moves coalesce while every button or wheel transition is kept.
Lending: while the session has a geometry, the open sink is lent to the transport, which then
writes the reports itself (no second wake-up per event); this actor keeps the device, the
geometry and recovery, and takes the sink back on any change (``lending.py``).
Must not import zmq.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import msgspec

from concierge.actors.input.events import BUTTON_BITS, Area, TabletState
from concierge.actors.input.lending import Mode, SinkLender
from concierge.actors.input.settings import InputSettings
from concierge.actors.input.sinks import Sink, open_sink
from concierge.errors import ConfigError
from concierge.runtime.node import POLLOUT, Incoming, Node, NodeContext, Reply

log = logging.getLogger(__name__)


class InputNode(Node):
    """The ``input`` actor: one tablet for the active session's desktop."""

    accepts = frozenset({"input.mouse", "input.geometry", "input.status", "input.mouse_taken", "input.tablet_state"})

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        self.settings = InputSettings()
        self.sink: Sink | None = None
        self.areas: dict[int, Area] = {}
        self.monitors: list[dict[str, int]] = []
        self.width = 0
        self.height = 0
        self.state = TabletState()
        self._pending: deque[tuple[int, int, int]] = deque()
        self._watching = False
        self.lender = SinkLender(self, ctx, "")

    def start(self) -> None:
        """Validate settings and open the sink (uinput or file)."""
        try:
            self.settings = msgspec.convert(dict(self.ctx.settings), InputSettings)
        except msgspec.ValidationError as err:
            raise ConfigError(str(err), key=f"actors.{self.ctx.actor_id}.settings") from err
        s = self.settings
        self.sink = open_sink(s.sink, s.device_name, s.uinput_path)
        self.lender = SinkLender(self, self.ctx, s.lend_to)
        log.info("input sink %s", self.sink.name, extra={"event": "input.started"})
        self.ctx.set_health("degraded", "no session geometry yet")
        if s.geometry_from:
            # After a restart (kill -9) the gateway would only push on the next change: ask.
            self.ctx.request(
                s.geometry_from,
                "session.geometry",
                {},
                timeout_s=2.0,
                on_reply=self._geometry_reply,
            )

    def _geometry_reply(self, reply: Reply) -> None:
        if reply.ok and isinstance(reply.body, dict) and not self.monitors:
            self.set_geometry(reply.body)

    def stop(self) -> None:
        """Close the device or file (the transport drops its copy on our pipe's hang-up)."""
        self.lender.close()
        if self.sink is not None:
            if self._watching and (fd := self.sink.fileno()) is not None:
                self.ctx.unwatch_fd(fd)
            self.sink.close()
            self.sink = None

    def handle(self, msg: Incoming) -> None:
        """Dispatch; ``input.mouse`` is the hot path."""
        if msg.type == "input.mouse":
            body = msg.body
            try:
                x, y, buttons, display_id = (int(body[k]) for k in ("x", "y", "buttons", "display_id"))
            except (KeyError, TypeError, ValueError):
                self.ctx.count("input.bad_mouse")
                return
            if self.lender.mode is Mode.WRITER or not self.lender.intercept(x, y, buttons, display_id):
                self.mouse(x, y, buttons, display_id)
                self.lender.maybe_offer()
            return
        if msg.type in {"input.mouse_taken", "input.tablet_state"}:
            if msg.src == self.lender.lend_to:
                self.lender.handle(msg.type, msg.body)
            else:
                self.ctx.count("input.lend_refused")
            return
        if msg.type == "input.geometry":
            allowed = self.settings.geometry_from
            if allowed and msg.src != allowed:
                self.ctx.count("input.geometry_refused")
                return
            self.set_geometry(msg.body)
            return
        if msg.type == "input.status" and msg.reply is not None:
            msg.reply.ok(
                {
                    "sink": self.sink.name if self.sink else "",
                    "width": self.width,
                    "height": self.height,
                    "monitors": self.monitors,
                    "pending": len(self._pending),
                    "writer": self.lender.mode.value,
                }
            )
            return
        super().handle(msg)

    # --- hot path --------------------------------------------------------------------------------
    def mouse(self, x: int, y: int, buttons: int, display_id: int) -> None:
        """Map a display-relative state to the desktop and emit (or queue) one report."""
        area = self.areas.get(display_id)
        if area is None:
            self.ctx.count("input.unknown_display")  # dropped without SYN, as the stock daemon
            return
        x, y = area.place(x, y)
        buttons &= BUTTON_BITS
        pending = self._pending
        if pending:
            if pending[-1][2] == buttons:
                pending[-1] = (x, y, buttons)
                self.ctx.count("input.coalesced")
            elif len(pending) < self.settings.max_pending:
                pending.append((x, y, buttons))
            else:
                self.ctx.count("input.overflow")
            return
        self._emit(x, y, buttons)

    def _emit(self, x: int, y: int, buttons: int) -> None:
        sink = self.sink
        if sink is None:
            return
        prev = (self.state.x, self.state.y, self.state.buttons)
        if sink.write(self.state.report(x, y, buttons)):
            return
        self.state.x, self.state.y, self.state.buttons = prev  # not written: retry from there
        self._pending.append((x, y, buttons))
        self._watch_writable()

    def _watch_writable(self) -> None:
        if self._watching or self.sink is None or (fd := self.sink.fileno()) is None:
            return
        self._watching = True
        self.ctx.watch_fd(fd, self._writable, POLLOUT)

    def _writable(self, revents: int) -> None:
        del revents
        sink = self.sink
        while self._pending and sink is not None:
            x, y, buttons = self._pending[0]
            prev = (self.state.x, self.state.y, self.state.buttons)
            if not sink.write(self.state.report(x, y, buttons)):
                self.state.x, self.state.y, self.state.buttons = prev
                return
            self._pending.popleft()
        if self._watching and sink is not None and (fd := sink.fileno()) is not None:
            self.ctx.unwatch_fd(fd)
        self._watching = False
        self.lender.maybe_offer()

    @property
    def pending(self) -> int:
        """Reports waiting for a slow sink."""
        return len(self._pending)

    # --- geometry --------------------------------------------------------------------------------
    def set_geometry(self, body: Any) -> None:
        """Replace the display map and re-range the tablet to the new bounding box."""
        try:
            monitors = [
                {k: int(m[k]) for k in ("x", "y", "width", "height")} | {"display_id": int(m.get("display_id", i))}
                for i, m in enumerate(body["monitors"])
            ]
        except (KeyError, TypeError, ValueError, AttributeError):
            self.ctx.count("input.bad_geometry")
            log.warning("ignored malformed geometry", extra={"event": "input.bad_geometry"})
            return
        self.monitors = monitors
        self.areas = {m["display_id"]: Area(m["x"], m["y"], m["width"], m["height"]) for m in monitors}
        width = max((m["x"] + m["width"] for m in monitors), default=0)
        height = max((m["y"] + m["height"] for m in monitors), default=0)
        if (width, height) != (self.width, self.height):
            self.width, self.height = width, height
            if self.sink is not None and width and height:
                self.sink.set_range(width, height)
        log.info(
            "geometry %dx%d, %d displays",
            width,
            height,
            len(monitors),
            extra={"event": "input.geometry"},
        )
        self.lender.changed()
        if monitors:
            self.ctx.set_health("ok", f"{self.sink.name if self.sink else ''} {width}x{height}")
        else:
            self.ctx.set_health("degraded", "no active session: mouse states are dropped")

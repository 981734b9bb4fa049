"""DirectTablet: the transport writes MOUSE_STATE reports straight into the input actor's sink.

Why (a deliberate turn, see docs/architecture.md): the mouse is the one latency-critical path,
and going transport -> input actor costs a second process wake-up per event (a datagram and a
poll return, ~40-60 µs on a small guest): 1.3-1.5x spice-vdagentd, which writes from the process
that read the port. So the input actor lends its open sink (uinput device or input_event file)
to the transport over SCM_RIGHTS, and the transport's bridge thread writes each report itself.

Ownership stays with the input actor: it opens, ranges and recreates the device, decides the
geometry, and takes the sink back whenever anything changes. The hand-over is a three-step
exchange on the lanes (ordered datagrams) so exactly one process writes at any time and the
tablet state (last x, y, buttons) travels with the pen:

1. ``spice.mouse_offer {gen, monitors}`` + fds (sink, life): the transport dups them and *holds*
   mouse states (it may still have casts to the input actor in flight), answering
   ``input.mouse_taken {gen}``.
2. The input actor has by then written every state cast before the offer was taken, so it
   answers ``spice.mouse_go {gen, x, y, buttons}``: the transport adopts that state, writes what
   it held and from now on writes directly.
3. Giving it back: ``spice.mouse_offer {gen}`` without fds (revoke), a failed write, the life
   pipe hanging up (the input actor died), or no ``go`` within :data:`HOLD_S`. The transport
   closes its copies and sends ``input.tablet_state {gen, state}`` *before* casting any further
   state, so the input actor continues from the true last report.

Security: the transport now holds an input device descriptor. A hostile host already moves the
pointer and clicks through MOUSE_STATE, so this gives it no new power; the write path keeps the
input actor's validation (display must be known, coordinates clamped to that display, buttons
masked to the seven protocol bits), offers are taken only from the configured input actor, and
every received descriptor is closed on release. Must not import zmq.
"""

from __future__ import annotations

import errno
import logging
import os
import select
from typing import Any

from concierge.actors.input.events import BUTTON_BITS, Area, TabletState
from concierge.runtime.node import FdSender, Incoming, NodeContext, TimerHandle

log = logging.getLogger(__name__)

#: an offer whose ``go`` has not come by then is handed back (the input actor stays the writer)
HOLD_S = 1.0
#: mouse states held between taking an offer and its ``go`` (moves coalesce; then dropped)
MAX_HELD = 256
#: at most this many displays in an offer (a session has a handful)
MAX_DISPLAYS = 64
_COORD_MAX = 1 << 16  # display origins and sizes: X11 and the SPICE protocol stay below 64 Ki


class DirectTablet:
    """The transport's side of the hand-over; every method runs on the transport's bridge."""

    def __init__(self, ctx: NodeContext, input_actor: str) -> None:
        self.ctx = ctx
        self.input_actor = input_actor
        self.gen = 0
        self.fd: int | None = None
        self._life: int | None = None
        self.areas: dict[int, Area] = {}
        self.state = TabletState()
        self._held: list[tuple[int, int, int, int]] | None = None
        self._timer: TimerHandle | None = None

    @property
    def writing(self) -> bool:
        """True while the transport writes reports itself (after ``go``)."""
        return self.fd is not None and self._held is None

    # --- the exchange --------------------------------------------------------------------------
    def deliver(self, msg: Incoming) -> bool:
        """``spice.mouse_offer`` / ``spice.mouse_go`` from the input actor; False if not ours."""
        if msg.type not in {"spice.mouse_offer", "spice.mouse_go"}:
            return False
        body = msg.body
        if msg.src != self.input_actor or not isinstance(body, dict) or type(body.get("gen")) is not int:
            self.ctx.count("spice.mouse_offer_refused")
            return True
        if msg.type == "spice.mouse_go":
            self._go(body)
        elif msg.fds:
            self._take(body, msg.fds)
        else:
            self.release(body["gen"], answer=True)
        return True

    def _take(self, body: dict[str, Any], fds: tuple[int, ...]) -> None:
        areas = _areas(body.get("monitors"))
        if len(fds) != 2 or areas is None:
            self.ctx.count("spice.mouse_offer_refused")
            return
        self.release(self.gen, answer=False)  # a newer incarnation's offer replaces an old one
        try:
            sink = os.dup(fds[0])
        except OSError:  # out of descriptors: the input actor keeps writing
            self.ctx.count("spice.mouse_offer_refused")
            return
        try:
            life = os.dup(fds[1])
        except OSError:
            os.close(sink)
            self.ctx.count("spice.mouse_offer_refused")
            return
        self.gen = body["gen"]
        self.fd, self._life = sink, life
        self.areas = areas
        self._held = []
        self.ctx.watch_fd(self._life, self._life_event, select.POLLIN)
        self._timer = self.ctx.call_later(HOLD_S, self._hold_expired)
        if not self._tell("input.mouse_taken", {"gen": self.gen}):
            self.release(self.gen, answer=False)

    def _go(self, body: dict[str, Any]) -> None:
        held = self._held
        if held is None or self.fd is None or body["gen"] != self.gen:
            self.ctx.count("spice.mouse_go_stale")
            return
        try:
            x, y, buttons = (int(body[k]) for k in ("x", "y", "buttons"))
        except (KeyError, TypeError, ValueError):
            self.ctx.count("spice.mouse_offer_refused")
            self.release(self.gen, answer=True)
            return
        self.state.x, self.state.y, self.state.buttons = x, y, buttons & BUTTON_BITS
        self._held = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for i, (hx, hy, hb, hd) in enumerate(held):
            if not self.write(hx, hy, hb, hd):  # fell back: the rest goes the old way too
                for rest in held[i:]:
                    self._cast(*rest)
                return
        log.info("writing the tablet directly (generation %d)", self.gen, extra={"event": "spice.mouse_direct"})

    def release(self, gen: int, *, answer: bool) -> None:
        """Close our copies; cast held states back; with ``answer`` tell the input actor the
        tablet state under ``gen`` (None when we never wrote: its own is still true)."""
        wrote = self.writing
        held, self._held = self._held or [], None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._life is not None:
            self.ctx.unwatch_fd(self._life)
            os.close(self._life)
            self._life = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if answer:
            state = [self.state.x, self.state.y, self.state.buttons] if wrote else None
            if not self._tell("input.tablet_state", {"gen": gen, "state": state}):
                self.ctx.count("spice.tablet_state_lost")
        for x, y, buttons, display_id in held:
            self._cast(x, y, buttons, display_id)

    def _life_event(self, revents: int) -> None:
        del revents  # readable or hung up: the input actor's end is gone (nothing is ever written)
        log.info("input actor gone: tablet released", extra={"event": "spice.mouse_released"})
        self.release(self.gen, answer=False)

    def _hold_expired(self) -> None:
        self._timer = None
        if self._held is not None:
            self.ctx.count("spice.mouse_go_timeout")
            self.release(self.gen, answer=False)

    # --- the hot path --------------------------------------------------------------------------
    def write(self, x: int, y: int, buttons: int, display_id: int) -> bool:
        """Write (or hold) one state; False when the caller must cast it to the input actor."""
        fd = self.fd
        if fd is None:
            return False
        held = self._held
        if held is not None:
            if held and held[-1][2] == buttons and held[-1][3] == display_id:
                held[-1] = (x, y, buttons, display_id)
            elif len(held) < MAX_HELD:
                held.append((x, y, buttons, display_id))
            else:
                self.ctx.count("spice.mouse_held_overflow")
            return True
        area = self.areas.get(display_id)
        if area is None:
            self.ctx.count("spice.mouse_unknown_display")  # dropped without SYN, as the stock daemon
            return True
        state = self.state
        prev = (state.x, state.y, state.buttons)
        px, py = area.place(x, y)
        try:
            os.write(fd, state.report(px, py, buttons & BUTTON_BITS))
        except OSError as err:
            state.x, state.y, state.buttons = prev  # not written: the input actor goes on from there
            self.ctx.count("spice.mouse_direct_failed")
            if err.errno not in (errno.EAGAIN, errno.EPIPE):
                log.warning("direct tablet write failed: %s", err, extra={"event": "spice.mouse_fallback"})
            self.release(self.gen, answer=True)
            return False
        return True

    # --- helpers -------------------------------------------------------------------------------
    def _tell(self, type_: str, body: dict[str, Any]) -> bool:
        if isinstance(self.ctx, FdSender):
            return self.ctx.send_fds(self.input_actor, type_, body, ())
        self.ctx.cast(self.input_actor, type_, body, lane="input")
        return True

    def _cast(self, x: int, y: int, buttons: int, display_id: int) -> None:
        body = {"x": x, "y": y, "buttons": buttons, "display_id": display_id}
        self.ctx.cast(self.input_actor, "input.mouse", body, lane="input", ttl_s=0.05)

    def close(self) -> None:
        """The front-end is closing (host gone, transport stopping): drop our copies and hand
        the tablet state back, so the input actor goes on from the true last report."""
        self.release(self.gen, answer=self.fd is not None)


def _areas(monitors: Any) -> dict[int, Area] | None:
    """``[[display_id, x, y, width, height], ...]`` as Areas; None if malformed."""
    if not isinstance(monitors, list) or not 0 < len(monitors) <= MAX_DISPLAYS:
        return None
    areas = {}
    for row in monitors:
        if not isinstance(row, list) or len(row) != 5:
            return None
        if not all(type(v) is int and 0 <= v < _COORD_MAX for v in row):
            return None
        display_id, x, y, width, height = row
        if width < 1 or height < 1:
            return None
        areas[display_id] = Area(x, y, width, height)
    return areas

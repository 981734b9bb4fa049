"""SinkLender: the input actor's side of lending its sink to the transport (SCM_RIGHTS).

Why: see ``concierge.transport.spice.tablet`` (the transport's side and the exchange). Here the
rules that keep exactly one writer and a true tablet state:

* only the *writer* (``WRITER`` mode) ever writes; the sink is offered when this actor is the
  writer, has a geometry, an open sink and nothing queued (and not more often than
  :data:`RETRY_S` after a failed or lost attempt);
* ``OFFERED``: this actor still writes (the transport holds what it reads) until the
  transport's ``input.mouse_taken``, answered by ``spice.mouse_go`` with our tablet state;
* ``HANDED``: the transport writes. A geometry change takes the sink back (``RECLAIMING``:
  mouse states that arrive meanwhile are held until the transport's ``input.tablet_state``,
  which carries the true last report) and offers it again;
* a mouse state arriving while ``HANDED`` means the transport lost the sink without telling
  (it restarted): we write again with the tablet state forgotten, so the next report carries
  both axes;
* each offer carries the read end of a fresh pipe whose write end only this process holds:
  when it dies the transport sees the hang-up and drops its copies at once, so no orphan
  device outlives its owner. A generation number tags each offer so a stale answer is ignored.

Must not import zmq.
"""

from __future__ import annotations

import enum
import os
import time
from typing import TYPE_CHECKING, Any

from concierge.runtime.node import FdSender, NodeContext, TimerHandle

if TYPE_CHECKING:
    from concierge.actors.input.node import InputNode

#: an offer not taken, or a reclaim not answered, within this is given up (lanes are local: only
#: a dead or wedged transport takes that long)
ANSWER_S = 1.0
#: least time between two offers after one failed, was lost or was given back on a write error
RETRY_S = 0.2
#: mouse states held while reclaiming (moves coalesce, then dropped)
MAX_HELD = 256


class Mode(enum.Enum):
    """Who writes the tablet."""

    WRITER = "input"
    OFFERED = "input (offered)"
    HANDED = "transport"
    RECLAIMING = "input (reclaiming)"


class SinkLender:
    """Offers, hands and takes back the sink; every method runs on the input actor's bridge."""

    def __init__(self, node: InputNode, ctx: NodeContext, lend_to: str) -> None:
        self.node = node
        self.ctx = ctx
        self.lend_to = lend_to if isinstance(ctx, FdSender) else ""
        self.mode = Mode.WRITER
        # distinct per incarnation, so an answer meant for our predecessor is never taken as ours
        self.gen = time.monotonic_ns()
        self._life: int | None = None
        self._timer: TimerHandle | None = None
        self._held: list[tuple[int, int, int, int]] = []
        self._next_try = 0.0
        self._retry: TimerHandle | None = None

    # --- from the input actor ------------------------------------------------------------------
    def intercept(self, x: int, y: int, buttons: int, display_id: int) -> bool:
        """A mouse state in a mode where we must not write it now; True when dealt with."""
        if self.mode is Mode.RECLAIMING:
            held = self._held
            if held and held[-1][2:] == (buttons, display_id):
                held[-1] = (x, y, buttons, display_id)
            elif len(held) < MAX_HELD:
                held.append((x, y, buttons, display_id))
            else:
                self.ctx.count("input.held_overflow")
            return True
        if self.mode is Mode.HANDED:
            self.ctx.count("input.lend_lost")
            self._end(invalidate=True)
            self._next_try = self.ctx.clock.monotonic() + RETRY_S
        return False

    def maybe_offer(self) -> None:
        """Offer the sink if we are the writer and nothing stands in the way."""
        node = self.node
        if (
            self.mode is not Mode.WRITER
            or not self.lend_to
            or not node.areas
            or node.sink is None
            or node.pending
            or (sink_fd := node.sink.fileno()) is None
        ):
            return
        wait_s = self._next_try - self.ctx.clock.monotonic()
        if wait_s > 0:  # too soon after the last attempt: try again then, mouse or not
            if self._retry is None:
                self._retry = self.ctx.call_later(wait_s, self._retry_offer)
            return
        assert isinstance(self.ctx, FdSender)
        self._next_try = self.ctx.clock.monotonic() + RETRY_S
        self.gen += 1
        monitors = [[d, a.x, a.y, a.width, a.height] for d, a in node.areas.items()]
        try:
            life_r, life_w = os.pipe()
        except OSError:  # out of descriptors: keep writing here
            self.ctx.count("input.offer_undelivered")
            return
        try:
            sent = self.ctx.send_fds(
                self.lend_to, "spice.mouse_offer", {"gen": self.gen, "monitors": monitors}, (sink_fd, life_r)
            )
        finally:
            os.close(life_r)
        if not sent:
            os.close(life_w)
            self.ctx.count("input.offer_undelivered")
            return
        self._life = life_w
        self.mode = Mode.OFFERED
        self._arm(self._give_up)

    def _retry_offer(self) -> None:
        self._retry = None
        self.maybe_offer()

    def changed(self) -> None:
        """Geometry or sink changed: take the sink back (then offer it again) or offer it now."""
        self._next_try = 0.0
        if self.mode in (Mode.HANDED, Mode.OFFERED):
            assert isinstance(self.ctx, FdSender)
            self.mode = Mode.RECLAIMING
            if not self.ctx.send_fds(self.lend_to, "spice.mouse_offer", {"gen": self.gen}, ()):
                self._end(invalidate=True)  # the transport is gone or wedged: it lost the sink
                return
            self._arm(self._give_up)
        elif self.mode is Mode.WRITER:
            self.maybe_offer()

    # --- from the transport --------------------------------------------------------------------
    def handle(self, type_: str, body: Any) -> None:
        """``input.mouse_taken`` / ``input.tablet_state`` (sender already checked)."""
        if not isinstance(body, dict) or body.get("gen") != self.gen:
            self.ctx.count("input.lend_stale")
            return
        if type_ == "input.mouse_taken" and self.mode is Mode.OFFERED:
            assert isinstance(self.ctx, FdSender)
            if self.node.pending:  # the sink fell behind since the offer: we keep writing
                self._end(invalidate=False)  # our hang-up makes the transport cast back
                self._next_try = self.ctx.clock.monotonic() + RETRY_S
                return
            s = self.node.state
            go = {"gen": self.gen, "x": s.x, "y": s.y, "buttons": s.buttons}
            if self.ctx.send_fds(self.lend_to, "spice.mouse_go", go, ()):
                self.mode = Mode.HANDED
                self._cancel()
            else:
                self._end(invalidate=False)  # it holds: our hang-up makes it cast them back
            return
        if type_ == "input.tablet_state" and self.mode in (Mode.HANDED, Mode.RECLAIMING):
            state = body.get("state")
            if isinstance(state, list) and len(state) == 3 and all(type(v) is int for v in state):
                s = self.node.state
                s.x, s.y, s.buttons = state
            self._end(invalidate=False)
            self.maybe_offer()  # after a geometry change at once; after a failure, rate-limited
            return
        self.ctx.count("input.lend_stale")

    # --- endings -------------------------------------------------------------------------------
    def _give_up(self) -> None:
        self._timer = None
        if self.mode in (Mode.OFFERED, Mode.RECLAIMING):
            self.ctx.count("input.lend_timeout")
            # no retry by timer: with no host attached nobody would take it, and an idle agent
            # must stay quiet; the next mouse state (a host is there) offers again
            self._end(invalidate=self.mode is Mode.RECLAIMING)

    def _end(self, *, invalidate: bool) -> None:
        """Become the writer again, write what was held, and close our end of the life pipe."""
        self._cancel()
        self.gen += 1  # whatever answer is still on its way is now stale
        if self._life is not None:
            os.close(self._life)
            self._life = None
        if invalidate:  # nobody knows the last report: the next one carries both axes
            self.node.state.x = self.node.state.y = -1
        self.mode = Mode.WRITER
        held, self._held = self._held, []
        for state in held:
            self.node.mouse(*state)

    def _arm(self, callback: Any) -> None:
        self._cancel()
        self._timer = self.ctx.call_later(ANSWER_S, callback)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """The input actor stops: the hang-up tells the transport to drop its copies."""
        self._cancel()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._life is not None:
            os.close(self._life)
            self._life = None
        self.mode = Mode.WRITER

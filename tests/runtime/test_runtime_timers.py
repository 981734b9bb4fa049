"""Issue 14 item 6: a cancelled timer must not hold its callback until its due time.

The QGA front-end arms a deadline guard per routed command and cancels it when the answer
comes; the bridge kept every cancelled guard (and the request state its closure holds) in its
heap until the deadline: +14 MB PSS per 100k routed requests. Measured here on a real bridge
(real ZeroMQ context and sockets), by what stays reachable, not by timing.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from concierge.runtime import sockets
from concierge.runtime.bridge import Bridge
from concierge.runtime.endpoints import RuntimeLayout


class _Payload:
    """Stands for the request state a deadline guard's closure keeps alive (and is the callback)."""

    def __call__(self) -> None:
        """Never runs: the guard is cancelled first."""


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[Bridge]:
    layout = RuntimeLayout(tmp_path)
    layout.ensure_dirs()
    zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    control = sockets.dealer(zctx, layout.url(layout.control), "t")
    made = Bridge(actor_id="t", layout=layout, welcome={}, zctx=zctx, control=control)
    try:
        yield made
    finally:
        made.close()
        control.close(0)
        zctx.term()


def _guards(bridge: Bridge, count: int) -> list[weakref.ref[_Payload]]:
    """Arm and cancel ``count`` 60 s guards the way the QGA front-end does; weak refs to what
    each closure held."""
    held = []
    for _ in range(count):
        payload = _Payload()
        held.append(weakref.ref(payload))
        timer = bridge.call_later(60.0, payload)
        timer.cancel()
    return held


def test_a_cancelled_timer_lets_go_of_its_callback_at_once(bridge: Bridge) -> None:
    held = _guards(bridge, 1000)
    gc.collect()
    assert sum(ref() is not None for ref in held) == 0


def test_cancelled_timers_do_not_accumulate_over_20k_routed_requests(bridge: Bridge) -> None:
    live = bridge.call_later(60.0, lambda: None)  # one live timer among the husks
    for _ in range(20):
        _guards(bridge, 1000)
        bridge._run_due(bridge.clock.monotonic())  # one loop iteration between bursts, as under real traffic
    assert bridge.timer_count() <= 2 * 1 + 64 + 1000
    assert not live.cancelled


def test_timers_still_run_in_due_order_and_cancel_is_idempotent(bridge: Bridge) -> None:
    ran: list[int] = []
    timers = [bridge.call_later(-1.0 + i * 0.001, lambda i=i: ran.append(i)) for i in range(200)]
    for timer in timers[::2]:
        timer.cancel()
        timer.cancel()
    bridge._run_due(bridge.clock.monotonic())
    assert ran == list(range(1, 200, 2))
    timers[1].cancel()  # after it ran: nothing happens
    assert bridge.timer_count() == 0

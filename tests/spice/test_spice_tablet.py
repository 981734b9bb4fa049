"""The transport's DirectTablet against hostile or stale hand-over messages (in-process)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from concierge.runtime.node import Incoming
from concierge.testing.context import FakeContext
from concierge.transport.spice.tablet import DirectTablet


@pytest.fixture
def ctx() -> Iterator[FakeContext]:
    c = FakeContext("transport")
    yield c
    c.close()


def _offer(tablet: DirectTablet, body: object, fds: tuple[int, ...], src: str = "input") -> None:
    tablet.deliver(Incoming("cast", "spice.mouse_offer", body, src, fds=fds))


def test_spice_tablet_refuses_hostile_offers_and_keeps_nothing(ctx: FakeContext) -> None:
    tablet = DirectTablet(ctx, "input")
    r, w = os.pipe()
    life_r, life_w = os.pipe()
    good = [[0, 0, 0, 800, 600]]
    try:
        _offer(tablet, {"gen": 1, "monitors": good}, (w, life_r), src="guestops")  # not the owner
        _offer(tablet, {"gen": "1", "monitors": good}, (w, life_r))  # bad generation
        _offer(tablet, {"gen": 1, "monitors": good}, (w,))  # no life pipe
        for monitors in ([], [[0, 0, 0, 0, 600]], [[0, -1, 0, 8, 8]], [[0, 0, 0, 1 << 20, 8]], "x", [[0, 0, 0]]):
            _offer(tablet, {"gen": 1, "monitors": monitors}, (w, life_r))
        assert tablet.fd is None
        assert ctx.counters["spice.mouse_offer_refused"] == 9
        # nothing was dup'd: only the test's four descriptors point at the pipes
        assert not tablet.write(1, 1, 0, 0)  # without a lent sink the caller casts
    finally:
        for fd in (r, w, life_r, life_w):
            os.close(fd)


def test_spice_tablet_exchange_write_and_release_on_owner_death(ctx: FakeContext) -> None:
    tablet = DirectTablet(ctx, "input")  # no "input" peer: _tell fails, so the offer is let go
    r, w = os.pipe()
    life_r, life_w = os.pipe()
    _offer(tablet, {"gen": 5, "monitors": [[0, 0, 0, 800, 600]]}, (w, life_r))
    assert tablet.fd is None  # could not say "taken": nothing held
    os.close(w)
    os.close(life_r)
    os.close(life_w)
    os.close(r)

    tablet._tell = lambda *_: True  # type: ignore[method-assign]  # the input actor hears us
    r, w = os.pipe()
    life_r, life_w = os.pipe()
    _offer(tablet, {"gen": 6, "monitors": [[0, 0, 0, 800, 600]]}, (w, life_r))
    os.close(w)
    os.close(life_r)
    assert tablet.fd is not None and not tablet.writing
    assert tablet.write(10, 10, 0, 0)  # held until "go"
    tablet.deliver(Incoming("cast", "spice.mouse_go", {"gen": 5, "x": 0, "y": 0, "buttons": 0}, "input"))
    assert ctx.counters["spice.mouse_go_stale"] == 1 and not tablet.writing
    tablet.deliver(Incoming("cast", "spice.mouse_go", {"gen": 6, "x": 0, "y": 0, "buttons": 0}, "input"))
    assert tablet.writing
    assert tablet.write(20, 10, 0, 0)
    assert len(os.read(r, 4096)) == 24 * 5  # held (x, y, SYN) then the move (x, SYN)
    # the owner dies: its end of the life pipe hangs up and the transport lets the sink go
    os.close(life_w)
    tablet._life_event(0)
    assert tablet.fd is None and not tablet.write(1, 1, 0, 0)
    time.sleep(0)
    assert os.read(r, 4096) == b""  # every write end is closed: ours, the test's, the tablet's
    os.close(r)

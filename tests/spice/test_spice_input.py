"""Input actor: exact input_event sequences, multi-monitor mapping, file/FIFO sink, coalescing."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from concierge.actors.input.events import (
    ABS_X,
    ABS_Y,
    BTN_LEFT,
    BTN_MIDDLE,
    BTN_RIGHT,
    BTN_SIDE,
    EV_ABS,
    EV_KEY,
    EV_REL,
    EV_SYN,
    INPUT_EVENT,
    REL_WHEEL,
    TabletState,
    decode_events,
)
from concierge.actors.input.node import InputNode
from concierge.testing.context import FakeContext
from concierge.testing.fdloop import PollingFakeContext

SYN = (EV_SYN, 0, 0)
TWO_MONITORS = {
    "monitors": [
        {"x": 0, "y": 0, "width": 1280, "height": 800},
        {"x": 1280, "y": 0, "width": 1024, "height": 768},
    ]
}
L, M, R, U, D, S = 2, 4, 8, 16, 32, 64


def test_spice_input_event_is_24_bytes() -> None:
    assert INPUT_EVENT.size == 24


def test_spice_stock_sequences() -> None:
    """The sequences measured on spice-vdagentd 0.22.1 (spice.md 2.3)."""
    t = TabletState()
    t.report(100, 100, 0)
    assert decode_events(t.report(100, 100, L)) == [(EV_KEY, BTN_LEFT, 1), SYN]
    assert decode_events(t.report(110, 120, 0)) == [
        (EV_ABS, ABS_X, 110),
        (EV_ABS, ABS_Y, 120),
        (EV_KEY, BTN_LEFT, 0),
        SYN,
    ]
    assert decode_events(t.report(110, 120, U)) == [(EV_REL, REL_WHEEL, 1), SYN]
    assert decode_events(t.report(110, 120, 0)) == [SYN]
    assert decode_events(t.report(110, 120, D)) == [(EV_REL, REL_WHEEL, -1), SYN]
    t.report(110, 120, 0)
    assert decode_events(t.report(110, 120, R | M)) == [
        (EV_KEY, BTN_MIDDLE, 1),
        (EV_KEY, BTN_RIGHT, 1),
        SYN,
    ]
    assert decode_events(t.report(110, 120, R | M | S)) == [(EV_KEY, BTN_SIDE, 1), SYN]
    assert decode_events(t.report(110, 120, R | M | S)) == [SYN]


@pytest.fixture
def sink_file(tmp_path: Path) -> Path:
    return tmp_path / "events"


@pytest.fixture
def input_ctx(sink_file: Path) -> Iterator[FakeContext]:
    ctx = FakeContext("input", {"sink": f"file:{sink_file}"})
    ctx.run_node(InputNode)
    yield ctx
    ctx.close()


def _events(path: Path) -> list[tuple[int, int, int]]:
    return decode_events(path.read_bytes())


def test_spice_input_two_monitors_mapping(input_ctx: FakeContext, sink_file: Path) -> None:
    input_ctx.tell("input.geometry", src="session", body=TWO_MONITORS)
    input_ctx.tell("input.mouse", {"x": 10, "y": 10, "buttons": 0, "display_id": 1})
    status = input_ctx.ask("input.status").unwrap()
    assert (status["width"], status["height"]) == (2304, 800)
    assert _events(sink_file) == [(EV_ABS, ABS_X, 1290), (EV_ABS, ABS_Y, 10), SYN]


def test_spice_input_unknown_display_is_dropped_without_syn(input_ctx: FakeContext, sink_file: Path) -> None:
    input_ctx.tell("input.geometry", src="session", body=TWO_MONITORS)
    input_ctx.tell("input.mouse", {"x": 10, "y": 10, "buttons": 0, "display_id": 5})
    input_ctx.tell("input.mouse", {"x": 1, "y": 2, "buttons": 0})  # malformed: no display_id
    input_ctx.ask("input.status").unwrap()
    assert _events(sink_file) == []
    assert input_ctx.counters["input.unknown_display"] == 1
    assert input_ctx.counters["input.bad_mouse"] == 1


def test_spice_input_geometry_change_remaps(input_ctx: FakeContext, sink_file: Path) -> None:
    input_ctx.tell("input.geometry", src="session", body=TWO_MONITORS)
    input_ctx.tell(
        "input.geometry",
        {"monitors": [{"x": 0, "y": 0, "width": 1024, "height": 768, "display_id": 1}]},
        src="session",
    )
    input_ctx.tell("input.mouse", {"x": 10, "y": 10, "buttons": 0, "display_id": 1})
    # ignored, the previous map is kept
    input_ctx.tell("input.geometry", src="session", body={"monitors": "garbage"})
    input_ctx.tell("input.mouse", {"x": 20, "y": 10, "buttons": 0, "display_id": 1})
    status = input_ctx.ask("input.status").unwrap()
    assert (status["width"], status["height"]) == (1024, 768)
    assert _events(sink_file) == [
        (EV_ABS, ABS_X, 10),
        (EV_ABS, ABS_Y, 10),
        SYN,
        (EV_ABS, ABS_X, 20),
        SYN,
    ]


def test_spice_input_geometry_only_from_the_gateway(input_ctx: FakeContext) -> None:
    input_ctx.tell("input.geometry", TWO_MONITORS, src="guestops")
    assert input_ctx.ask("input.status").unwrap()["monitors"] == []
    assert input_ctx.counters["input.geometry_refused"] == 1


def test_spice_input_missing_uinput_is_unavailable(tmp_path: Path) -> None:
    from concierge.errors import UnavailableError

    ctx = FakeContext("input", {"sink": "uinput", "uinput_path": str(tmp_path / "uinput")})
    with pytest.raises(UnavailableError, match=r"uinput"):
        ctx.run_node(InputNode)
    ctx.close()


def test_spice_input_bad_sink_setting_is_a_config_error() -> None:
    from concierge.errors import ConfigError

    ctx = FakeContext("input", {"sink": "bogus"})
    with pytest.raises(ConfigError, match=r"^actors\.input\.settings\.sink: unknown sink 'bogus' \(use 'uinput'"):
        ctx.run_node(InputNode)
    ctx.close()
    ctx = FakeContext("input", {"sink": "uinput", "nope": 1})
    with pytest.raises(ConfigError, match=r"nope"):
        ctx.run_node(InputNode)
    ctx.close()


def test_spice_input_fifo_behind_coalesces_moves_and_keeps_buttons(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    ctx = PollingFakeContext("input", {"sink": f"file:{fifo}"})
    try:
        ctx.run_node(InputNode)
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        ctx.tell(
            "input.geometry",
            src="session",
            body={"monitors": [{"x": 0, "y": 0, "width": 5000, "height": 5000}]},
        )
        # Nobody reads: the pipe (64 KiB) fills after ~1400 moves, then states queue and coalesce.
        for i in range(3000):
            ctx.tell("input.mouse", {"x": i % 4000, "y": 7, "buttons": 0, "display_id": 0})
        ctx.tell("input.mouse", {"x": 1, "y": 1, "buttons": L, "display_id": 0})
        ctx.tell("input.mouse", {"x": 2, "y": 2, "buttons": 0, "display_id": 0})
        ctx.tell("input.mouse", {"x": 3, "y": 3, "buttons": 0, "display_id": 0})
        assert ctx.ask("input.status").unwrap()["pending"] >= 1
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                chunk = os.read(reader, 65536)
            except BlockingIOError:
                if ctx.ask("input.status").unwrap()["pending"] == 0:
                    try:
                        data += os.read(reader, 65536)
                    except BlockingIOError:
                        break
                    continue
                time.sleep(0.01)
                continue
            data += chunk
        events = decode_events(data)
        keys = [e for e in events if e[0] == EV_KEY]
        assert keys == [(EV_KEY, BTN_LEFT, 1), (EV_KEY, BTN_LEFT, 0)]
        # (2,2) and (3,3) carry the same buttons: merged, the release survives
        assert events[-4:] == [(EV_ABS, ABS_X, 3), (EV_ABS, ABS_Y, 3), (EV_KEY, BTN_LEFT, 0), SYN]
        assert ctx.counters["input.coalesced"] > 0
        syns = events.count(SYN)
        assert syns < 3003  # some moves were merged, none of the clicks
    finally:
        ctx.close()
        os.close(reader)

"""Clipboard protocol state machine (serials, caps, line endings, session switches, timeouts)
with an in-test backend that records commands; the real X11/Wayland boundaries have their
own tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from session_helpers import RecordingContext, sent, sent_with_blobs, wait_until

import concierge.actors.clipboard.node as clipnode
from concierge.actors.clipboard.backend import BackendEvents
from concierge.actors.clipboard.formats import to_client_text, to_guest_text
from concierge.actors.vdagent import Cap

BY_DEMAND, SELECTION, SERIAL, CRLF = (
    1 << Cap.CLIPBOARD_BY_DEMAND,
    1 << Cap.CLIPBOARD_SELECTION,
    1 << Cap.CLIPBOARD_GRAB_SERIAL,
    1 << Cap.GUEST_LINEEND_CRLF,
)


class RecordingBackend:
    """Stands in for the display server side; records what the node commands."""

    name = "recording"
    selections = (0, 1)

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []
        self.events: BackendEvents | None = None

    def start(self, events: BackendEvents) -> None:
        self.events = events

    def grab(self, selection: int, types: list[int]) -> None:
        self.commands.append(("grab", selection, types))

    def release(self, selection: int) -> None:
        self.commands.append(("release", selection))

    def provide(self, token: int, clip_type: int, data: bytes | None) -> None:
        self.commands.append(("provide", token, clip_type, data))

    def fetch(self, selection: int, clip_type: int, token: int) -> None:
        self.commands.append(("fetch", selection, clip_type, token))

    def stop(self) -> None:
        self.commands.append(("stop",))


@pytest.fixture()
def machine(session_ctx: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RecordingContext, RecordingBackend]]:
    backend = RecordingBackend()
    monkeypatch.setattr(clipnode, "pick_backend", lambda settings, env: backend)
    ctx: RecordingContext = session_ctx("clipboard", {"request_timeout_s": 0.3})
    ctx.run_node(clipnode.ClipboardNode)
    yield ctx, backend


def state(ctx: RecordingContext) -> dict[str, Any]:
    return ctx.ask("clipboard.state").body  # type: ignore[no-any-return]


def test_serials_client_grab_wins_and_stale_grabs(machine: Any) -> None:
    ctx, backend = machine
    ctx.tell("spice.announce_capabilities", {"request": 1, "caps": [BY_DEMAND | SELECTION | SERIAL]})
    assert backend.events is not None
    backend.events.guest_grab(0, [1])
    wait_until(lambda: sent(ctx, "clipboard_grab"))
    assert sent(ctx, "clipboard_grab")[-1]["serial"] == 0  # our counter is now 1
    # the client grabbed at the same time with serial 0: "client grab wins"
    ctx.tell("spice.clipboard_grab", {"selection": 0, "serial": 0, "types": [1]})
    assert state(ctx)["owner"][0] == "client"
    ctx.tell("spice.clipboard_grab", {"selection": 0, "serial": 7, "types": [1]})  # stale
    state(ctx)  # a request through the same queue: the tell above has been handled
    assert ctx.counters["clipboard.stale_grab"] == 1
    ctx.tell("spice.clipboard_grab", {"selection": 0, "serial": 1, "types": [2]})
    state(ctx)
    assert ("grab", 0, [2]) in backend.commands
    ctx.tell("spice.announce_capabilities", {"request": 1, "caps": [BY_DEMAND | SELECTION | SERIAL]})
    assert state(ctx)["serial"][0] == 0 and ("release", 0) in backend.commands


def test_caps_gate_what_is_sent(machine: Any) -> None:
    ctx, backend = machine
    ctx.tell("spice.announce_capabilities", {"request": 1, "caps": [BY_DEMAND]})  # no SELECTION
    backend.events.guest_grab(1, [1])
    backend.events.guest_grab(0, [1])
    wait_until(lambda: sent(ctx, "clipboard_grab"))
    assert [g["selection"] for g in sent(ctx, "clipboard_grab")] == [0]
    ctx.tell("spice.announce_capabilities", {"request": 0, "caps": [0]})  # a legacy client
    backend.events.guest_grab(0, [1])
    state(ctx)
    assert len(sent(ctx, "clipboard_grab")) == 1


def test_line_endings_follow_the_client(machine: Any) -> None:
    ctx, backend = machine
    ctx.tell("spice.announce_capabilities", {"request": 1, "caps": [BY_DEMAND | CRLF]})
    ctx.tell("spice.clipboard_grab", {"selection": 0, "types": [1]})
    state(ctx)  # backends call app_request from their own thread, after the grab was handled
    backend.events.app_request(0, 1, 41)
    wait_until(lambda: sent(ctx, "clipboard_request"))
    ctx.tell("spice.clipboard", {"selection": 0, "type": 1, "data": b"a\r\nb\r\n\0"})
    wait_until(lambda: ("provide", 41, 1, b"a\nb\n") in backend.commands)
    backend.events.guest_grab(0, [1])
    ctx.tell("spice.clipboard_request", {"selection": 0, "type": 1})
    token = wait_until(lambda: [c for c in backend.commands if c[0] == "fetch"])[-1][3]
    backend.events.guest_data(token, 1, b"x\ny\n")
    assert wait_until(lambda: sent_with_blobs(ctx, "clipboard"))[-1][1] == b"x\r\ny\r\n"
    assert to_guest_text(b"a\r\n", False) == b"a\r\n" and to_client_text(b"a\n", False) == b"a\n"


def test_paste_timeout_and_mismatched_type(machine: Any) -> None:
    ctx, backend = machine
    ctx.tell("spice.clipboard_grab", {"selection": 0, "types": [1, 2]})
    state(ctx)
    backend.events.app_request(0, 1, 50)
    wait_until(lambda: ("provide", 50, 1, None) in backend.commands, what="timed-out paste refused")
    backend.events.app_request(0, 1, 51)
    wait_until(lambda: len(sent(ctx, "clipboard_request")) == 2)
    ctx.tell("spice.clipboard", {"selection": 0, "type": 2, "data": b"\x89PNG"})
    wait_until(lambda: ("provide", 51, 1, None) in backend.commands, what="mismatch refused")


def test_session_switch_and_disconnect(machine: Any) -> None:
    ctx, backend = machine
    ctx.tell("spice.announce_capabilities", {"request": 1, "caps": [BY_DEMAND | SELECTION]})
    backend.events.guest_grab(1, [1])
    ctx.tell("spice.clipboard_grab", {"selection": 0, "types": [1]})
    wait_until(lambda: sent(ctx, "clipboard_grab"))
    ctx.tell("session.deactivated", {})
    wait_until(lambda: {"selection": 1} in sent(ctx, "clipboard_release"))
    assert ("release", 0) in backend.commands
    backend.events.guest_grab(1, [1])  # inactive: nothing goes to the client
    assert not state(ctx)["active"] and len(sent(ctx, "clipboard_grab")) == 1
    ctx.tell("session.activated", {})
    wait_until(lambda: len(sent(ctx, "clipboard_grab")) == 2, what="re-announced on activation")
    ctx.tell("spice.clipboard_grab", {"selection": 0, "types": [1]})
    ctx.tell("spice.client_disconnected", {})
    wait_until(lambda: backend.commands.count(("release", 0)) == 2)


def test_requests_for_unowned_or_unknown_selection_get_empty_data(machine: Any) -> None:
    ctx, _ = machine
    ctx.tell("spice.clipboard_request", {"selection": 0, "type": 1})
    ctx.tell("spice.clipboard_request", {"selection": 2, "type": 1})  # SECONDARY: not handled
    wait_until(lambda: len(sent_with_blobs(ctx, "clipboard")) == 2)
    assert all(data == b"" for _, data in sent_with_blobs(ctx, "clipboard"))

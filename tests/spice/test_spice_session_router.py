"""The session process's router: messages reach registered user actors; without one, the
client gets the refusal it expects instead of waiting forever."""

from __future__ import annotations

from typing import Any

from concierge.actors.session.agent import SessionRouter


def test_spice_router_delivers_to_registered_actor() -> None:
    router = SessionRouter()
    seen: list[tuple[str, Any, tuple[bytes, ...]]] = []
    router.register("clipboard", lambda t, b, x: seen.append((t, b, x)))
    assert router.deliver("spice.clipboard", {"selection": 0, "type": 1}, (b"hi",)) is None
    assert seen == [("spice.clipboard", {"selection": 0, "type": 1}, (b"hi",))]


def test_spice_router_refuses_for_missing_actors() -> None:
    router = SessionRouter()
    assert router.deliver("spice.clipboard_request", {"selection": 1, "type": 2}, ()) == (
        {"type": "clipboard", "body": {"selection": 1, "type": 0}},
        (b"",),
    )
    assert router.deliver("spice.file_xfer_start", {"id": 5, "data": "x"}, ()) == (
        {"type": "file_xfer_status", "body": {"id": 5, "result": 7, "data": b""}},
        (),
    )
    assert router.deliver("spice.monitors_config", {"monitors": []}, ()) is None
    assert router.unrouted == {
        "spice.clipboard_request": 1,
        "spice.file_xfer_start": 1,
        "spice.monitors_config": 1,
    }

"""The answer.watch long-poll (concierge.runtime.pushed), both sides driven directly: what is
answered at once, what waits, what a change pushes, and how a follower reacts to each error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from concierge.errors import ErrorCode
from concierge.runtime.node import Incoming, Reply
from concierge.runtime.pushed import MAX_WAITERS, WATCH, AnswerFollower, AnswerOwner


class Port:
    """Records the one answer of a request."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, Any]] = []

    def ok(self, body: Any = None, blobs: tuple[bytes, ...] = ()) -> None:
        self.answers.append(("ok", body))

    def error(self, code: ErrorCode, message: str, *, retryable: bool = False) -> None:
        self.answers.append((str(code), message))


def ask(owner: AnswerOwner, body: Any) -> Port:
    port = Port()
    owner.handle(Incoming("req", WATCH, body, "transport", 1, 0, (), port))
    return port


def test_owner_answers_news_at_once_and_holds_the_rest_until_a_change() -> None:
    release = {"id": "one"}
    owner = AnswerOwner({"monitor.osinfo": lambda: dict(release)})
    first = ask(owner, {"type": "monitor.osinfo", "known": 0})
    assert first.answers == [("ok", {"generation": 1, "body": {"id": "one"}})]
    held = ask(owner, {"type": "monitor.osinfo", "known": 1})
    assert held.answers == []
    owner.refresh("monitor.osinfo")  # nothing changed: nothing pushed
    assert held.answers == []
    release["id"] = "two"
    owner.refresh("monitor.osinfo")
    assert held.answers == [("ok", {"generation": 2, "body": {"id": "two"}})]


def test_owner_refuses_what_it_cannot_watch_and_bounds_its_waiters() -> None:
    owner = AnswerOwner({"a": lambda: 1})
    for bad in (None, [], {"type": "b"}, {"type": "a", "known": "1"}, {"type": 7}):
        assert ask(owner, bad).answers[0][0] == "BAD_REQUEST", bad
    ask(owner, {"type": "a"})
    waiting = [ask(owner, {"type": "a", "known": 1}) for _ in range(MAX_WAITERS + 3)]
    assert [p.answers[0][0] for p in waiting[:3]] == ["BACKPRESSURE"] * 3
    assert all(p.answers == [] for p in waiting[3:])


def test_a_failing_probe_pushes_no_answer() -> None:
    def broken() -> Any:
        raise OSError("gone")

    owner = AnswerOwner({"a": broken})
    assert ask(owner, {"type": "a"}).answers == [("ok", {"generation": 1, "body": None})]


class Ctx:
    """Just what a follower uses of a NodeContext: request, call_later, count."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, Callable[[Reply], None]]] = []
        self.later: list[Callable[[], None]] = []
        self.counters: dict[str, int] = {}

    def request(self, dst: str, type: str, body: Any, *, timeout_s: float, on_reply: Callable[[Reply], None]) -> None:
        self.sent.append((dst, body, on_reply))

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> None:
        self.later.append(callback)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n


def test_follower_keeps_the_last_push_and_forgets_it_when_the_owner_dies() -> None:
    ctx = Ctx()
    follower = AnswerFollower(ctx)  # type: ignore[arg-type]
    assert follower.get("monitor", "monitor.osinfo") is None
    assert len(ctx.sent) == 1 and ctx.sent[0][1] == {"type": "monitor.osinfo", "known": 0}
    ctx.sent[0][2](Reply(True, {"generation": 3, "body": {"id": "x"}}))
    assert follower.get("monitor", "monitor.osinfo") == {"id": "x"}
    assert ctx.sent[1][1] == {"type": "monitor.osinfo", "known": 3}  # asks again at once
    ctx.sent[1][2](Reply(False, code=ErrorCode.TIMEOUT))  # quiet: keep it, ask again
    assert follower.get("monitor", "monitor.osinfo") == {"id": "x"}
    assert ctx.sent[2][1]["known"] == 3
    ctx.sent[2][2](Reply(False, code=ErrorCode.UNAVAILABLE))  # the monitor died
    assert follower.get("monitor", "monitor.osinfo") is None
    assert len(ctx.sent) == 3 and len(ctx.later) == 1
    ctx.later[0]()  # the successor is asked afresh
    assert ctx.sent[3][1] == {"type": "monitor.osinfo", "known": 0}


def test_follower_stops_when_the_owner_cannot_watch() -> None:
    ctx = Ctx()
    follower = AnswerFollower(ctx)  # type: ignore[arg-type]
    follower.get("monitor", "monitor.osinfo")
    ctx.sent[0][2](Reply(False, code=ErrorCode.UNKNOWN_TYPE))
    assert follower.get("monitor", "monitor.osinfo") is None
    assert len(ctx.sent) == 1 and not ctx.later  # never asked again: it routes
    assert ctx.counters == {"answer.watch_refused": 1}

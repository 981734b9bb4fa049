"""Answers pushed on change: a long-poll between the actor that owns an answer and a front-end
that wants to give it inline.

Why: some answers change only on events (the OS release, for instance), yet every QGA command
that asks for one costs two process hops and two wake-ups (~150 µs on a small guest, more than
qemu-ga's whole answer). The front-end instead keeps the last answer and renders it itself.

Protocol (request type :data:`WATCH`, body ``{"type": <request type>, "known": <generation>}``):
the owner answers ``{"generation": g, "body": <the answer of that request>}`` at once when its
generation differs from ``known``, else when the answer next changes. The follower asks again
after every answer. A follower that hears nothing (TIMEOUT) asks again and keeps its answer;
one whose owner died (UNAVAILABLE: the request died with it) forgets the answer, so a restarted
owner is asked afresh; one whose owner does not support watching (UNKNOWN_TYPE, BAD_REQUEST)
stops following and routes as before. Nothing is lost if a change races a re-ask: the
generation in the next ask tells the owner what the follower has.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from concierge.errors import ErrorCode
from concierge.runtime.node import Incoming, NodeContext, Reply, ReplyPort

log = logging.getLogger(__name__)

WATCH = "answer.watch"
#: how long one ask may wait for a change before the follower asks again
POLL_S = 300.0
#: waiting asks kept per answer type; the oldest beyond it is refused (no unbounded list)
MAX_WAITERS = 8
_RETRY_MIN_S = 0.5
_RETRY_MAX_S = 30.0
_REFUSED = frozenset({ErrorCode.UNKNOWN_TYPE, ErrorCode.BAD_REQUEST, ErrorCode.FORBIDDEN})


class AnswerOwner:
    """The owner side, in the actor that computes the answers (bridge thread only)."""

    def __init__(self, compute: dict[str, Callable[[], Any]]) -> None:
        self._compute = compute
        self._state: dict[str, tuple[int, Any]] = {}
        self._waiting: dict[str, list[tuple[ReplyPort, int]]] = {}

    def handle(self, msg: Incoming) -> None:
        """Answer a :data:`WATCH` request now, or when its answer changes."""
        if msg.reply is None:
            return
        body = msg.body if isinstance(msg.body, dict) else {}
        kind, known = body.get("type"), body.get("known", 0)
        if not isinstance(kind, str) or kind not in self._compute or type(known) is not int:
            msg.reply.error(ErrorCode.BAD_REQUEST, f"cannot watch {kind!r}")
            return
        generation, answer = self._current(kind)
        if generation != known:
            msg.reply.ok({"generation": generation, "body": answer})
            return
        waiting = [w for w in self._waiting.get(kind, []) if w[1] == 0 or w[1] > time.monotonic_ns()]
        while len(waiting) >= MAX_WAITERS:  # the oldest follower asks again later
            waiting.pop(0)[0].error(ErrorCode.BACKPRESSURE, f"too many watchers of {kind}")
        waiting.append((msg.reply, msg.deadline_ns))
        self._waiting[kind] = waiting

    def refresh(self, kind: str | None = None) -> None:
        """Something an answer depends on may have changed: recompute, and push what did."""
        for name in [kind] if kind is not None else list(self._state):
            if name not in self._state:
                continue
            old_generation, old = self._state[name]
            answer = self._safe_compute(name)
            if answer == old:
                continue
            self._state[name] = (old_generation + 1, answer)
            for port, _ in self._waiting.pop(name, []):
                port.ok({"generation": old_generation + 1, "body": answer})

    def _current(self, kind: str) -> tuple[int, Any]:
        state = self._state.get(kind)
        if state is None:
            state = self._state[kind] = (1, self._safe_compute(kind))
        return state

    def _safe_compute(self, kind: str) -> Any:
        try:
            return self._compute[kind]()
        except Exception:  # loop boundary: a failing probe pushes nothing (the follower routes)
            log.exception("cannot compute %s", kind, extra={"event": "answer.compute_failed"})
            return None


class AnswerFollower:
    """The follower side, in a front-end's process: the latest pushed answer per request type."""

    def __init__(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        self._answers: dict[tuple[str, str], tuple[int, Any]] = {}
        self._following: set[tuple[str, str]] = set()
        self._refused: set[tuple[str, str]] = set()

    def get(self, actor: str, kind: str) -> Any:
        """The last answer ``actor`` pushed for ``kind``, or None (then route the request);
        the first call starts following it."""
        key = (actor, kind)
        state = self._answers.get(key)
        if state is not None:
            return state[1]
        if key not in self._following and key not in self._refused:
            self._following.add(key)
            self._ask(key, 0, _RETRY_MIN_S)
        return None

    def _ask(self, key: tuple[str, str], known: int, retry_s: float) -> None:
        actor, kind = key

        def on_reply(reply: Reply) -> None:
            if reply.ok and isinstance(reply.body, dict) and type(reply.body.get("generation")) is int:
                generation, answer = reply.body["generation"], reply.body.get("body")
                if answer is None:
                    self._answers.pop(key, None)
                else:
                    self._answers[key] = (generation, answer)
                self._ask(key, generation, _RETRY_MIN_S)
                return
            if reply.code in _REFUSED or reply.ok:
                self._answers.pop(key, None)
                self._following.discard(key)
                self._refused.add(key)
                self._ctx.count("answer.watch_refused")
                return
            if reply.code == ErrorCode.TIMEOUT:
                self._ask(key, known, _RETRY_MIN_S)
                return
            # the owner died (or is not up yet): its answer may be stale; ask the successor
            self._answers.pop(key, None)
            self._ctx.call_later(retry_s, lambda: self._ask(key, 0, min(_RETRY_MAX_S, retry_s * 2)))

        self._ctx.request(actor, WATCH, {"type": kind, "known": known}, timeout_s=POLL_S, on_reply=on_reply)


_followers: weakref.WeakKeyDictionary[Any, AnswerFollower] = weakref.WeakKeyDictionary()


def follower_for(ctx: NodeContext) -> AnswerFollower | None:
    """The one follower of this process's context, shared by all its front-ends (None for a
    context that cannot be weakly referenced: then nothing is pushed and commands route)."""
    try:
        follower = _followers.get(ctx)
        if follower is None:
            follower = _followers[ctx] = AnswerFollower(ctx)
    except TypeError:
        return None
    return follower

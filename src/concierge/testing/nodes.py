"""Fake actor nodes for tests, injected by changing one ``entry`` line in a config.

- EchoNode: answers ``echo`` with its body, ``pid`` with its pid, ``ask`` by asking another actor.
- LagNode: an EchoNode whose ``lag`` answers after ``body`` seconds without holding a thread.
- CrashNode: exits with a crash code right after start (settings ``code``, ``after_s``).
- HangNode: ``hang`` deadlocks its actor thread while the process stays alive.
- SlowStartNode: takes ``delay_s`` to become ready.
- FloodNode: casts ``count`` messages to ``target`` as fast as it can.
- RecorderNode: records every delivery; ``recorded`` returns them.
- ConfigErrorNode / UnavailableNode: fail start with a classified error.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from concierge.actors.composite import CompositeNode
from concierge.errors import ConfigError, UnavailableError
from concierge.runtime.node import Incoming, Reply
from concierge.runtime.service import ServiceNode, handler


class EchoNode(ServiceNode):
    """Answers requests; the workhorse of runtime tests and the ipc benchmark."""

    @handler("echo")
    def echo(self, msg: Incoming) -> Any:
        """Return the body unchanged."""
        return msg.body

    @handler("big")
    def big(self, msg: Incoming) -> str:
        """Return ``body`` characters: a small request with a reply too big for a datagram."""
        return "x" * int(msg.body)

    @handler("pid")
    def pid(self, _msg: Incoming) -> int:
        """Return this process's pid."""
        return os.getpid()

    @handler("ask", blocking=True)
    def ask(self, msg: Incoming) -> Any:
        """Forward ``{"dst", "type", "body"}`` to another actor and return its answer."""
        body = msg.body
        reply: Reply = self.ctx.call(body["dst"], body["type"], body.get("body"), timeout_s=5.0)
        return {"ok": reply.ok, "body": reply.body, "code": reply.code, "message": reply.message}

    @handler("pingpong", blocking=True)
    def pingpong(self, msg: Incoming) -> list[int]:
        """Time ``count`` sequential echo round trips to ``dst``, chained on the bridge thread (ns)."""
        dst, count = str(msg.body["dst"]), int(msg.body.get("count", 1000))
        samples: list[int] = []
        done = threading.Event()

        def send() -> None:
            started = time.perf_counter_ns()

            def on_reply(_reply: Reply) -> None:
                samples.append(time.perf_counter_ns() - started)
                if len(samples) < count:
                    send()
                else:
                    done.set()

            self.ctx.request(dst, "echo", None, timeout_s=5.0, on_reply=on_reply)

        self.ctx.call_soon(send)
        done.wait(timeout=120)
        return samples

    @handler("barrage", blocking=True)
    def barrage(self, msg: Incoming) -> dict[str, Any]:
        """Keep ``depth`` ``lag`` requests in flight to ``dst`` for ``seconds`` (every
        ``zmq_every``-th too big for a lane datagram, so ZeroMQ carries it); returns how many
        were answered, by outcome, and the slowest answer (s)."""
        body = msg.body
        dst, depth = str(body["dst"]), int(body.get("depth", 8))
        timeout_s, lag = float(body.get("timeout_s", 10.0)), float(body.get("lag_s", 0.005))
        zmq_every = int(body.get("zmq_every", 10))
        until = time.monotonic() + float(body["seconds"])
        outcomes: dict[str, int] = {}
        slowest = [0.0]
        lock = threading.Condition()
        sent = [0]
        in_flight = [0]

        def send() -> None:
            started = time.monotonic()
            sent[0] += 1
            padding = "p" * (70_000 if sent[0] % zmq_every == 0 else 0)

            def on_reply(reply: Reply) -> None:
                with lock:
                    slowest[0] = max(slowest[0], time.monotonic() - started)
                    key = "ok" if reply.ok else str(reply.code)
                    outcomes[key] = outcomes.get(key, 0) + 1
                    again = time.monotonic() < until
                    if not again:
                        in_flight[0] -= 1
                        lock.notify()
                if again:
                    send()

            self.ctx.request(dst, "lag", {"s": lag, "pad": padding}, timeout_s=timeout_s, on_reply=on_reply)

        in_flight[0] = depth
        for _ in range(depth):
            self.ctx.call_soon(send)
        with lock:
            lock.wait_for(lambda: in_flight[0] == 0 and time.monotonic() >= until, timeout=float(body["seconds"]) + 30)
        return {"outcomes": outcomes, "slowest_s": slowest[0], "sent": sent[0]}

    @handler("publish")
    def publish(self, msg: Incoming) -> None:
        """Publish ``{"topic", "body"}`` on the event plane."""
        self.ctx.publish(msg.body["topic"], msg.body.get("body"))

    @handler("note")
    def note(self, msg: Incoming) -> None:
        """Send ``{"type", "body"}`` to the supervisor as a note (as lifecycle sends freeze.state)."""
        self.ctx.notify_supervisor(str(msg.body["type"]), msg.body.get("body"))

    @handler("exit")
    def exit(self, msg: Incoming) -> None:
        """Exit the process with the given code (simulates a crash)."""
        os._exit(int(msg.body or 70))


class LagNode(EchoNode):
    """``lag`` answers its pid after ``body["s"]`` seconds from a bridge timer: many can wait at
    once, as requests do in an actor under load, and a kill catches them in flight."""

    accepts_lag = frozenset({"lag"})

    def on_start(self) -> None:
        """Accept ``lag`` besides the echo handlers."""
        self.accepts = frozenset(self.accepts or ()) | self.accepts_lag

    def handle(self, msg: Incoming) -> None:
        """Answer ``lag`` later; everything else as EchoNode."""
        if msg.type != "lag" or msg.reply is None:
            super().handle(msg)
            return
        reply, pid = msg.reply, os.getpid()
        self.ctx.call_later(float(msg.body.get("s", 0.0)), lambda: reply.ok(pid))


class CrashNode(EchoNode):
    """Crashes ``after_s`` seconds after start with exit ``code`` (default 70)."""

    def on_start(self) -> None:
        """Schedule the crash."""
        code = int(self.ctx.settings.get("code", 70))
        self.ctx.call_later(float(self.ctx.settings.get("after_s", 0.05)), lambda: os._exit(code))


class HangNode(EchoNode):
    """``hang`` blocks the actor thread forever: only the heartbeat watchdog can notice."""

    @handler("hang")
    def hang(self, _msg: Incoming) -> None:
        """Deadlock the actor thread on a lock nobody releases."""
        lock = threading.Lock()
        lock.acquire()
        lock.acquire()


class SlowStartNode(EchoNode):
    """Takes ``delay_s`` (default 1 s) before it is ready."""

    def on_start(self) -> None:
        """Sleep on purpose: this fake exists to test start timeouts."""
        time.sleep(float(self.ctx.settings.get("delay_s", 1.0)))


class FloodNode(EchoNode):
    """Casts ``count`` messages of ``size`` bytes to ``target`` on ``flood``."""

    @handler("flood")
    def flood(self, msg: Incoming) -> int:
        """Send the flood; returns how many were queued."""
        body = msg.body or {}
        payload = b"x" * int(body.get("size", 64))
        count = int(body.get("count", 1000))
        for _ in range(count):
            self.ctx.cast(str(body.get("target", "recorder")), "flood.item", payload)
        return count


class RecorderNode(ServiceNode):
    """Records every cast and event it receives; ``recorded`` returns them."""

    def on_start(self) -> None:
        """Accept every type, and subscribe to the topics named in settings."""
        self.accepts = None
        self.seen: list[dict[str, Any]] = []
        for topic in self.ctx.settings.get("subscribe", []):
            self.ctx.subscribe(topic)

    def handle(self, msg: Incoming) -> None:
        """Record, then answer ``recorded`` requests."""
        if msg.type == "recorded" and msg.reply is not None:
            msg.reply.ok(self.seen)
            return
        self.seen.append(
            {
                "kind": msg.kind,
                "type": msg.type,
                "src": msg.src,
                "body": msg.body if not isinstance(msg.body, bytes) else len(msg.body),
            }
        )
        if msg.reply is not None:
            msg.reply.ok(None)


class ConfigErrorNode(EchoNode):
    """Refuses to start with a configuration error (exit 78)."""

    def on_start(self) -> None:
        """Fail like a typo in settings would."""
        raise ConfigError("unknown key", key="actors.bad.settings.colour")


class UnavailableNode(EchoNode):
    """Refuses to start because its device is absent (exit 69)."""

    def on_start(self) -> None:
        """Fail like a missing virtio port would."""
        raise UnavailableError("device not there yet")


class InlineEchoNode(EchoNode):
    """Answers ``echo`` on the bridge thread itself (no pykka hop): the runtime's floor."""

    @handler("echo", inline=True)
    def echo(self, msg: Incoming) -> Any:
        """Return the body unchanged, from the bridge thread."""
        return msg.body


class NeedsXlibNode(EchoNode):
    """Imports python-xlib when it starts, as the X11 clipboard and display back-ends do."""

    def on_start(self) -> None:
        """Fail with ImportError where python-xlib is absent (or hidden by a test)."""
        import Xlib  # noqa: F401, PLC0415 - the optional dependency under test


class PartlyOptionalNode(CompositeNode):
    """A group whose second part needs python-xlib: without it the first part keeps serving."""

    parts = (EchoNode, NeedsXlibNode)


class BuggyCallbackNode(EchoNode):
    """Its fd callback, timers and jobs raise on purpose: the loop must survive each (the last
    line of defence behind node code that is meant to handle its own errors)."""

    def start(self) -> None:
        super().start()
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.ctx.watch_fd(self._r, self._on_readable)

    def _on_readable(self, _revents: int) -> None:
        os.read(self._r, 4096)
        raise RuntimeError("fd callback bug (on purpose)")

    @handler("poke_fd", inline=True)
    def poke_fd(self, _msg: Incoming) -> bool:
        """Make the fd callback raise once."""
        os.write(self._w, b"x")
        return True

    @handler("poke_timer", inline=True)
    def poke_timer(self, _msg: Incoming) -> bool:
        """Schedule a timer that raises."""

        def bug() -> None:
            raise RuntimeError("timer bug (on purpose)")

        self.ctx.call_later(0.0, bug)
        return True

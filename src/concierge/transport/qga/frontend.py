"""QgaFrontEnd: qemu-ga's wire protocol on one host channel, commands routed to capability actors.

Runs on the transport actor's bridge thread and never blocks. Requests are parsed with qemu-ga's
own lexer rules (:mod:`.lexer`), checked (:mod:`.validate`) and either answered at once
(``guest-sync``, ``guest-sync-delimited``, ``guest-ping``, ``guest-info``: even while other
commands are still running) or sent to the actor named by the command's route. Replies to routed
commands keep request order; a sync discards everything the host asked before it. Must not
import capability actors or zmq.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from concierge.errors import ErrorCode
from concierge.runtime.node import NodeContext, Reply
from concierge.transport.host.api import HostLink
from concierge.transport.qga import argspec
from concierge.transport.qga.bigreply import is_large, reply_pieces
from concierge.transport.qga.commands import all_routes
from concierge.transport.qga.commands.registry import QgaRoute
from concierge.transport.qga.fastjson import DECODER, WHITESPACE
from concierge.transport.qga.lexer import JsonStreamer
from concierge.transport.qga.outqueue import HEAVY_COMMANDS, Pieces, ReplyQueue
from concierge.transport.qga.pushed import pushed_body
from concierge.transport.qga.replies import Encoded, error_line, return_line
from concierge.transport.qga.settings import QgaSettings, load
from concierge.transport.qga.validate import InvalidArgumentsError, check_struct
from concierge.transport.qga.wire import encode, qdict_order

log = logging.getLogger(__name__)

SENTINEL = b"\xff"
_FAST_LIMIT = 1 << 16
_ALLOWED_MEMBERS = frozenset({"execute", "arguments", "id"})
#: pause before re-sending an idempotent request that met a restarting actor
_RETRY_S = 0.1
_FREEZE_COMMANDS = frozenset({"guest-fsfreeze-freeze", "guest-fsfreeze-freeze-list", "guest-fsfreeze-thaw"})


class QgaFrontEnd:
    """The QGA protocol bound to one host link (one per unix client, one per serial port)."""

    def __init__(
        self,
        ctx: NodeContext,
        link: HostLink,
        settings: Mapping[str, Any] | None = None,
        *,
        routes: Mapping[str, QgaRoute] | None = None,
    ) -> None:
        self.ctx = ctx
        self.link = link
        self.settings: QgaSettings = load(settings or {})
        self.routes: dict[str, QgaRoute] = dict(all_routes() if routes is None else routes)
        self.frozen = False
        self.replies = ReplyQueue(ctx, link)
        self.streamer = JsonStreamer(
            self._parsed,
            max_token_size=self.settings.max_message_bytes,
            max_token_count=self.settings.max_tokens,
            max_nesting=self.settings.max_nesting,
        )
        self._fast_ok = self.settings.max_message_bytes >= _FAST_LIMIT and self.settings.max_tokens >= _FAST_LIMIT
        allow = set(self.settings.allow_rpcs)
        block = set(self.settings.block_rpcs)
        self.freeze_allowed = argspec.FREEZE_ALLOWED | {
            name for name, route in self.routes.items() if route.allowed_while_frozen
        }
        self._info_cache: dict[bool, str] = {}
        self.policy_enabled: dict[str, bool] = {
            spec.name: (not allow or spec.name in allow) and spec.name not in block for spec in argspec.COMMANDS
        }
        self._ask_freeze_state()
        self._ask_policy()

    def _ask_policy(self) -> None:
        """Learn which commands the guestops policy denies, so they are refused before their
        arguments are checked and shown ``enabled: false`` in guest-info, as qemu-ga's -b does."""

        def on_reply(reply: Reply) -> None:
            if not reply.ok or not isinstance(reply.body, dict):
                return
            for name in reply.body.get("disabled", []):
                if name in self.policy_enabled:
                    self.policy_enabled[name] = False
            self._info_cache.clear()

        if any(route.actor == "guestops" for route in self.routes.values()):
            self.ctx.request("guestops", "policy.get", {}, timeout_s=5.0, on_reply=on_reply)

    def _ask_freeze_state(self) -> None:
        """Learn whether filesystems are frozen already (the transport may restart mid-freeze)."""
        route = self.routes.get("guest-fsfreeze-status")
        if route is None:
            return

        def on_reply(reply: Reply) -> None:
            if not reply.ok:
                return
            try:
                state = route.render(reply.body)
            except Exception:  # loop boundary: a broken render only costs this hint
                log.exception("cannot render freeze status", extra={"event": "qga.render_bug"})
                return
            if state == "frozen":
                self.frozen = True

        self.ctx.request(
            route.actor,
            route.request,
            route.to_request({}),
            timeout_s=route.timeout_s,
            on_reply=on_reply,
        )

    # ------------------------------------------------------------------ FrontEnd protocol
    def connected(self) -> None:
        """A host attached: start from a clean parser."""
        self._forget()

    def disconnected(self) -> None:
        """The host left: its partial input and unsent replies are gone."""
        self._forget()

    def close(self) -> None:
        """The transport actor stops."""
        self._forget()

    def event(self, topic: str, body: Any) -> None:
        """Freeze state from the lifecycle actor (``lifecycle.frozen`` / ``lifecycle.thawed``)."""
        del body
        if topic == "lifecycle.frozen":
            self.frozen = True
        elif topic == "lifecycle.thawed":
            self.frozen = False

    def received(self, data: bytes) -> None:
        """Bytes from the host, any split."""
        if self._fast_ok and len(data) < _FAST_LIMIT and self.streamer.idle and data.isascii():
            self._fast(data)
        else:
            self.streamer.feed(data)

    # ------------------------------------------------------------------ parsing
    def _forget(self) -> None:
        self.replies.discard()
        self.streamer.reset()

    def _fast(self, data: bytes) -> None:
        """Whole ASCII objects decode with the C json module; anything unusual goes the slow way."""
        if b"\\u" in data:
            self.streamer.feed(data)
            return
        text = data.decode("ascii")
        pos = 0
        end = len(text)
        while True:
            while pos < end and text[pos] in WHITESPACE:
                pos += 1
            if pos == end:
                return
            if text[pos] != "{":
                break
            try:
                value, after = DECODER.raw_decode(text, pos)
            except (ValueError, RecursionError):
                break
            pos = after
            self._dispatch(value)
        self.streamer.feed(data[pos:])

    def _parsed(self, value: Any, error: str | None) -> None:
        if error is not None:
            self._send_now_or_queued(error_line("GenericError", error, None, False))
            return
        self._dispatch(value)

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, request: Any) -> None:
        """Handle one parsed request; a bug costs that request an error reply, never the
        connection with the replies still pending on it."""
        try:
            self._handle(request)
        except Exception as err:  # loop boundary: host bytes must not reach the bridge loop
            log.exception("QGA request failed", extra={"event": "qga.request_bug"})
            self.ctx.count("qga.request_bugs")
            self._send_now_or_queued(error_line("GenericError", f"internal error: {type(err).__name__}", None, False))

    def _handle(self, request: Any) -> None:
        if type(request) is not dict:
            self._send_now_or_queued(error_line("GenericError", "QMP input must be a JSON object", None, False))
            return
        has_id = "id" in request
        req_id = request.get("id")
        problem = self._check_envelope(request)
        if problem is not None:
            self._send_now_or_queued(error_line("GenericError", problem, req_id, has_id))
            return
        name: str = request["execute"]
        spec = argspec.BY_NAME.get(name)
        if spec is None:
            self._send_now_or_queued(
                error_line("CommandNotFound", f"The command {name} has not been found", req_id, has_id)
            )
            return
        disabled = self._disabled_reason(name)
        if disabled is not None:
            self._send_now_or_queued(error_line("CommandNotFound", disabled, req_id, has_id))
            return
        given = request.get("arguments")
        try:
            args = check_struct(spec.args, given or {}) if spec.args or given else {}
        except InvalidArgumentsError as err:
            self._send_now_or_queued(error_line("GenericError", err.desc, req_id, has_id))
            return
        if name in argspec.PROTOCOL_COMMANDS:
            self._protocol(name, args, req_id, has_id)
            return
        self._route(name, spec, args, req_id, has_id)

    @staticmethod
    def _check_envelope(request: dict[str, Any]) -> str | None:
        keys = request.keys()
        if (
            keys <= _ALLOWED_MEMBERS
            and type(request.get("execute")) is str
            and type(request.get("arguments", {})) is dict
        ):
            return None
        for key in qdict_order(keys):
            value = request[key]
            if key == "execute":
                if type(value) is not str:
                    return "QMP input member 'execute' must be a string"
            elif key == "arguments":
                if type(value) is not dict:
                    return "QMP input member 'arguments' must be an object"
            elif key != "id":
                return f"QMP input member '{key}' is unexpected"
        if "execute" not in request:
            return "QMP input lacks member 'execute'"
        return None

    def _disabled_reason(self, name: str) -> str | None:
        if self.frozen and name not in self.freeze_allowed:
            return f"Command {name} has been disabled: the agent is in frozen state"
        if (
            not self.policy_enabled[name]
            or (name not in argspec.PROTOCOL_COMMANDS and name not in self.routes)
            or argspec.BY_NAME[name].windows_only
        ):
            return f"Command {name} has been disabled"
        return None

    def enabled(self, name: str) -> bool:
        """What guest-info reports for ``name``."""
        return self._disabled_reason(name) is None

    def _protocol(self, name: str, args: dict[str, Any], req_id: Any, has_id: bool) -> None:
        if name == "guest-ping":
            self.link.write(return_line({}, req_id, has_id))
            return
        if name == "guest-info":
            self.link.write(return_line(Encoded(self._info_text()), req_id, has_id))
            return
        # guest-sync / guest-sync-delimited: the host gave up on everything it asked before
        if self.replies.slots:
            self.ctx.count("qga.discarded_by_sync", self.replies.discard())
        line = return_line(args["id"], req_id, has_id)
        self.link.write(SENTINEL + line if name == "guest-sync-delimited" else line)

    def _info_text(self) -> str:
        """guest-info's answer, encoded once per freeze state (policy and routes are fixed)."""
        cached = self._info_cache.get(self.frozen)
        if cached is None:
            info = {
                "version": self.settings.version,
                "supported_commands": [
                    {
                        "name": spec.name,
                        "enabled": self.enabled(spec.name),
                        "success-response": spec.success_response,
                    }
                    for spec in argspec.COMMANDS
                ],
            }
            cached = self._info_cache[self.frozen] = encode(info)
        return cached

    def _route(self, name: str, spec: argspec.CommandSpec, args: dict[str, Any], req_id: Any, has_id: bool) -> None:
        route = self.routes[name]
        pushed = pushed_body(self.ctx, route) if route.pushed and not args else None
        if pushed is not None:  # its owner pushes it on change: answer inline
            self.ctx.count("qga.pushed")
            line = self._render(
                name=name, spec=spec, route=route, reply=Reply(True, pushed), req_id=req_id, has_id=has_id
            )
            if line is not None:  # pushed answers are small: never streamed in pieces
                self._send_now_or_queued(line if isinstance(line, bytes) else b"".join(line))
            return
        replies = self.replies
        if replies.pending >= self.settings.max_pending:
            self._send_now_or_queued(
                error_line(
                    "GenericError",
                    f"too many commands in progress ({replies.pending})",
                    req_id,
                    has_id,
                )
            )
            return
        try:
            body = route.to_request(args)
            if route.with_channel and isinstance(body, dict):
                body = {**body, "channel": self.link.name}
        except Exception as err:  # loop boundary: a broken route must not kill the channel
            log.exception("route %s failed to build its request", name, extra={"event": "qga.route_bug"})
            self._send_now_or_queued(
                error_line("GenericError", f"internal error: {type(err).__name__}", req_id, has_id)
            )
            return
        slot = replies.reserve(heavy=name in HEAVY_COMMANDS)
        epoch = replies.epoch
        started = 0.0

        def on_reply(reply: Reply) -> None:
            if epoch != replies.epoch or slot.done:
                self.ctx.count("qga.stale_replies")
                return
            left = route.timeout_s - (self.ctx.clock.monotonic() - started)
            if route.retry_unavailable and not reply.ok and reply.code == ErrorCode.UNAVAILABLE and left > _RETRY_S:
                self.ctx.count("qga.retried")  # the actor is restarting: ask the next one
                self.ctx.call_later(_RETRY_S, functools.partial(ask, left))
                return
            self.ctx.count("qga.route_us", int((self.ctx.clock.monotonic() - started) * 1e6))
            rendered = self._render(name=name, spec=spec, route=route, reply=reply, req_id=req_id, has_id=has_id)
            replies.complete(slot, rendered)

        def on_deadline() -> None:
            # our own deadline: a hung capability never leaves the host without an answer
            on_reply(Reply(ok=False, code=ErrorCode.TIMEOUT, message="deadline"))

        def ask(timeout_s: float) -> None:
            if epoch != replies.epoch or slot.done:
                return
            try:
                self.ctx.request(route.actor, route.request, body, timeout_s=timeout_s, on_reply=on_reply)
            except Exception as err:  # loop boundary: the slot must be answered, or it blocks the rest
                log.exception("cannot send %s", name, extra={"event": "qga.route_bug"})
                on_reply(Reply(ok=False, code=ErrorCode.INTERNAL, message=f"internal error: {type(err).__name__}"))

        def send() -> None:
            nonlocal started
            started = self.ctx.clock.monotonic()
            replies.set_deadline(slot, route.timeout_s, on_deadline)
            ask(route.timeout_s)

        self.ctx.count(f"qga.{name}")
        replies.start(slot, send)

    def _render(
        self,
        *,
        name: str,
        spec: argspec.CommandSpec,
        route: QgaRoute,
        reply: Reply,
        req_id: Any,
        has_id: bool,
    ) -> bytes | Pieces | None:
        if not reply.ok:
            if reply.code == ErrorCode.TIMEOUT:
                desc = f"Command {name} timed out after {route.timeout_s:g} s"
            else:
                desc = reply.message or str(reply.code)
            # a policy denial looks exactly like a command disabled in qemu-ga (-b / --block-rpcs)
            klass = "CommandNotFound" if reply.code == ErrorCode.FORBIDDEN else "GenericError"
            return error_line(klass, desc, req_id, has_id)
        try:
            result = route.render(reply.body)
        except Exception as err:  # loop boundary: a bad answer becomes an error reply
            log.exception("cannot render %s", name, extra={"event": "qga.render_bug"})
            return error_line("GenericError", f"internal error: {type(err).__name__}", req_id, has_id)
        if name in _FREEZE_COMMANDS:
            self._track_freeze(name, result)
        if not spec.success_response:
            return None
        if is_large(result):
            return reply_pieces(result, req_id, has_id)
        return return_line({} if result is None else result, req_id, has_id)

    def _track_freeze(self, name: str, result: Any) -> None:
        """qemu-ga semantics: a freeze that froze something closes the gate, a thaw opens it."""
        if name == "guest-fsfreeze-thaw":
            self.frozen = False
        elif type(result) is int and result > 0:
            self.frozen = True

    # ------------------------------------------------------------------ output
    def _send_now_or_queued(self, line: bytes) -> None:
        self.replies.send_now_or_queued(line)

"""Host->guest command handlers of the oVirt front-end (mixed into :class:`OvirtFrontEnd`).

Each handler turns one vdsm command into a request to the sso or lifecycle actor, with OGA's
lenient argument parsing (``reboot`` as the string "True", ``timeout`` int-able, ...). Logs name
commands, never their arguments (``login`` carries a password). Must not import zmq or actors.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from typing import Any

from concierge.runtime.node import NodeContext, Reply
from concierge.transport.ovirt import render
from concierge.transport.ovirt.codec import Message
from concierge.transport.ovirt.settings import OvirtSettings

log = logging.getLogger(__name__)

_INT32_MIN = -(1 << 31)
_INT32_MAX = (1 << 31) - 1


def lenient_int(value: Any) -> int:
    """OGA's ``int(x)`` on a host value, 0 for anything that is not a finite number or numeral,
    clamped to 32 bits (a 4,000-digit count would not even fit the request envelope).

    ``int()`` raises TypeError (lists, None), ValueError ("x", NaN) and OverflowError (``1e999``
    decodes to infinity): none of them may escape a handler.
    """
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return 0
    return max(_INT32_MIN, min(number, _INT32_MAX))


class HostCommands(abc.ABC):
    """The ``_on_<command>(msg, stale)`` handlers; the front-end provides the state and the
    primitives declared abstract below (a mixin: the split keeps each module small)."""

    ctx: NodeContext
    settings: OvirtSettings
    version: int
    _generation: int

    @abc.abstractmethod
    def _send(self, name: str, args: dict[str, Any]) -> None:
        """Provided by the front-end."""

    @abc.abstractmethod
    def _full_refresh(self) -> None:
        """Provided by the front-end."""

    @abc.abstractmethod
    def _collect(self, name: str) -> None:
        """Provided by the front-end."""

    @abc.abstractmethod
    def _poll_user(self, *, force: bool) -> None:
        """Provided by the front-end."""

    def _ask(
        self,
        dst: str,
        type_: str,
        body: Any,
        what: str,
        *,
        then: Callable[[Reply], None] | None = None,
        timeout_s: float | None = None,
    ) -> None:
        def done(reply: Reply) -> None:
            if not reply.ok:
                log.warning(
                    "%s failed: %s %s",
                    what,
                    reply.code,
                    reply.message,
                    extra={"event": "ovirt.command_failed"},
                )
            if then is not None:
                then(reply)

        self.ctx.request(dst, type_, body, timeout_s=timeout_s or self.settings.request_timeout_s, on_reply=done)

    def _on_refresh(self, msg: Message, stale: bool) -> None:
        if "apiVersion" not in msg.args and self.version > 0:
            self.version = 0  # an old vdsm: never raise the version from refresh, only lower it
        self._full_refresh()

    def _on_api_version(self, msg: Message, stale: bool) -> None:
        wanted = max(0, min(lenient_int(msg.args.get("apiVersion", 0)), render.MAX_VERSION))
        if wanted != self.version:
            log.info("api version %d -> %d", self.version, wanted, extra={"event": "ovirt.api_version"})
            self.version = wanted
            self._full_refresh()

    def _on_lock_screen(self, msg: Message, stale: bool) -> None:
        self._ask(
            self.settings.sso_actor,
            "sso.lock",
            {},
            "lock-screen",
            then=lambda r: self._poll_user(force=False),
        )

    def _on_login(self, msg: Message, stale: bool) -> None:
        username, password = msg.args.get("username"), msg.args.get("password")
        if not isinstance(username, str) or not isinstance(password, str) or not username:
            log.warning(
                "login without username/password strings ignored",
                extra={"event": "ovirt.bad_login"},
            )
            return
        self._ask(
            self.settings.sso_actor,
            "sso.login",
            {"username": username, "password": password},
            "login",
        )

    def _on_log_off(self, msg: Message, stale: bool) -> None:
        self._ask(
            self.settings.sso_actor,
            "sso.logoff",
            {},
            "log-off",
            then=lambda r: self._poll_user(force=False),
        )

    def _on_shutdown(self, msg: Message, stale: bool) -> None:
        delay = max(0, lenient_int(msg.args.get("timeout", 0)))
        reboot = str(msg.args.get("reboot", "False")).lower() == "true"
        message = msg.args.get("message")
        body = {
            "mode": "reboot" if reboot else "poweroff",
            "delay_s": delay,
            "message": message if isinstance(message, str) else "System going down",
        }
        self._ask(self.settings.lifecycle_actor, "lifecycle.shutdown", body, "shutdown")

    def _on_hibernate(self, msg: Message, stale: bool) -> None:
        mode = "ram" if msg.args.get("state") == "mem" else "disk"
        self._ask(self.settings.lifecycle_actor, "lifecycle.suspend", {"mode": mode}, "hibernate")

    def _on_echo(self, msg: Message, stale: bool) -> None:
        self._send("echo", dict(msg.args))

    def _on_set_cpus(self, msg: Message, stale: bool) -> None:
        count = lenient_int(msg.args.get("count", 0))
        if count <= 0:
            self._collect("number-of-cpus")
            return
        self._ask(
            self.settings.lifecycle_actor,
            "lifecycle.set_cpus",
            {"count": count},
            "set-number-of-cpus",
            then=lambda r: self._collect("number-of-cpus"),
        )

    def _on_lifecycle_event(self, msg: Message, stale: bool) -> None:
        kind = str(msg.args.get("type", ""))
        reply_id = msg.args.get("reply_id")
        generation = self._generation

        def complete(reply: Reply | None) -> None:
            if isinstance(reply_id, str) and generation == self._generation:
                self._send("completion", {"reply_id": reply_id, "done": True})

        if stale and kind.startswith("before_"):
            complete(None)
            return
        body = {"type": kind, "failure": bool(msg.args.get("failure", False))}
        self._ask(
            self.settings.lifecycle_actor,
            "lifecycle.guest_event",
            body,
            f"lifecycle-event {kind[:32]}",
            then=complete,
            timeout_s=self.settings.lifecycle_timeout_s,
        )

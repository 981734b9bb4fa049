"""SessionLinkNode: the user's session supervisor's bridge to the root session gateway.

Runs as the user (config id ``session`` in the per-user catalog, so the user actors' casts of
``spice.send`` and ``input.geometry`` land here). It holds the one stream to the gateway
(``GATEWAY_DIR/users/<uid>/session.sock``, framing in :mod:`concierge.actors.session.framing`),
routes ``spice.*`` messages from the client to the user actors and relays their answers back.
Identity is proven by the socket (SO_PEERCRED at the gateway), never by anything said here.
While the gateway is not reachable it retries on a timer and reports ``degraded``; a gateway
that refuses this agent ends the process with 77 (never restarted: a second agent would loop).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import msgspec

from concierge.actors.session import framing
from concierge.actors.session.messages import SOCKET_NAME, WIRE_VERSION
from concierge.errors import ConfigError, ProtocolError
from concierge.runtime.node import POLLIN, Incoming, Node, NodeContext, TimerHandle

log = logging.getLogger(__name__)

EXIT_REFUSED = 77

#: client message -> the user actors that serve it (several: each gets a copy)
ROUTES: dict[str, tuple[str, ...]] = {
    "spice.monitors_config": ("display",),
    "spice.graphics_device_info": ("display",),
    "spice.display_config": ("desktop",),
    "spice.clipboard": ("clipboard",),
    "spice.clipboard_grab": ("clipboard",),
    "spice.clipboard_request": ("clipboard",),
    "spice.clipboard_release": ("clipboard",),
    "spice.max_clipboard": ("clipboard",),
    "spice.file_xfer_start": ("desktop",),
    "spice.file_xfer_data": ("desktop",),
    "spice.file_xfer_status": ("desktop",),
    "spice.audio_volume_sync": ("desktop",),
    "spice.announce_capabilities": ("display", "clipboard", "desktop"),
    "spice.client_disconnected": ("clipboard", "desktop"),
}
#: the active/inactive flag of this session goes to these actors as session.(de)activated
SESSION_EVENT_TARGETS = ("clipboard", "desktop")


class LinkSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``[actors.session.settings]`` of the per-user catalog."""

    #: the root agent's runtime directory (where the gateway's per-uid sockets live)
    gateway_dir: str = "/run/concierge"
    #: X display announced to the gateway (informational); "" = $DISPLAY
    display: str = ""
    #: seconds between connection attempts while the gateway is absent
    retry_s: float = 1.0
    #: the user actors share this process (the compact session group): route to ourselves
    grouped: bool = False


class SessionLinkNode(Node):
    """One stream to the gateway, many user actors behind it."""

    accepts = frozenset({"spice.send", "input.geometry"})

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        self.settings = LinkSettings()
        self.sock: socket.socket | None = None
        self.reader = framing.FrameReader()
        self.active = False
        self.geometry: Any = None
        self._retry: TimerHandle | None = None

    def start(self) -> None:
        """Validate settings and start connecting (never fails for an absent gateway)."""
        try:
            self.settings = msgspec.convert(dict(self.ctx.settings), LinkSettings)
        except msgspec.ValidationError as err:
            raise ConfigError(str(err), key=f"actors.{self.ctx.actor_id}.settings") from err
        self._connect()

    @property
    def path(self) -> str:
        """The gateway endpoint of this uid."""
        return os.path.join(self.settings.gateway_dir, "users", str(os.getuid()), SOCKET_NAME)

    def _connect(self) -> None:
        self._retry = None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(self.path)
        except OSError as err:
            sock.close()
            self.ctx.set_health("degraded", f"gateway not reachable: {err.strerror}")
            self._retry = self.ctx.call_later(self.settings.retry_s, self._connect)
            return
        sock.setblocking(False)
        self.sock = sock
        self.reader = framing.FrameReader()
        self.ctx.watch_fd(sock.fileno(), self._readable, POLLIN)
        display = self.settings.display or os.environ.get("DISPLAY", "")
        self._send("hello", {"version": WIRE_VERSION, "display": display})
        if self.geometry is not None:
            self._send("geometry", self.geometry)
        self.ctx.set_health("ok", "attached to the gateway")
        log.info("attached to the session gateway", extra={"event": "session.link_up"})

    def _send(self, type_: str, body: Any, blobs: tuple[bytes, ...] = ()) -> None:
        if self.sock is None:
            return
        data = framing.encode(type_, body, blobs)
        self.sock.setblocking(True)  # frames are bounded; the gateway reads promptly
        try:
            self.sock.sendall(data)
        except OSError:
            self._lost("send failed")
        finally:
            if self.sock is not None:
                self.sock.setblocking(False)

    def _readable(self, _revents: int) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost("gateway closed the connection")
            return
        try:
            for type_, body, blobs in self.reader.feed(data):
                self._frame(type_, body, blobs)
        except ProtocolError as err:
            self._lost(f"bad frame from the gateway: {err}")

    def _frame(self, type_: str, body: Any, blobs: tuple[bytes, ...]) -> None:
        if type_ == "welcome":
            self.ctx.count("session.welcomed")
        elif type_ == "reject":
            reason = (body or {}).get("reason", "") if isinstance(body, dict) else ""
            log.error("the gateway refused this agent: %s", reason, extra={"event": "session.rejected"})
            self.ctx.set_health("failing", f"refused: {reason}")
            self.ctx.call_soon(lambda: self.ctx.stop(EXIT_REFUSED))
        elif type_ == "active":
            active = bool((body or {}).get("active")) if isinstance(body, dict) else False
            if active != self.active:
                self.active = active
                for actor in self._targets(SESSION_EVENT_TARGETS):
                    self.ctx.cast(actor, "session.activated" if active else "session.deactivated", body)
        else:
            targets = ROUTES.get(type_)
            if targets is None:
                self.ctx.count("session.unrouted")
                return
            for actor in self._targets(targets):
                self.ctx.cast(actor, type_, body, blobs=blobs)

    def _targets(self, actors: tuple[str, ...]) -> tuple[str, ...]:
        """Where a message for ``actors`` goes: them, or this very process when grouped (the
        composite then hands it to every part that accepts the type)."""
        return (self.ctx.actor_id,) if self.settings.grouped else actors

    def _lost(self, why: str) -> None:
        log.warning("gateway link lost: %s", why, extra={"event": "session.link_down"})
        if self.sock is not None:
            self.ctx.unwatch_fd(self.sock.fileno())
            self.sock.close()
            self.sock = None
        if self.active:
            self.active = False
            for actor in self._targets(SESSION_EVENT_TARGETS):
                self.ctx.cast(actor, "session.deactivated", {"active": False})
        self.ctx.set_health("degraded", why)
        if self._retry is None:
            self._retry = self.ctx.call_later(self.settings.retry_s, self._connect)

    def handle(self, msg: Incoming) -> None:
        """Relay the user actors' answers (``spice.send``) and layout (``input.geometry``)."""
        if msg.type == "spice.send":
            self._send("spice.send", msg.body, msg.blobs)
        elif msg.type == "input.geometry":
            monitors = (msg.body or {}).get("monitors", []) if isinstance(msg.body, dict) else []
            shaped = [{**m, "display_id": int(m.get("display_id", i))} for i, m in enumerate(monitors)]
            self.geometry = {"monitors": shaped}
            self._send("geometry", self.geometry)
        if msg.reply is not None:
            msg.reply.ok(None)

    def stop(self) -> None:
        """Close the stream (the gateway then forgets this agent)."""
        if self._retry is not None:
            self._retry.cancel()
        if self.sock is not None:
            self.ctx.unwatch_fd(self.sock.fileno())
            self.sock.close()
            self.sock = None

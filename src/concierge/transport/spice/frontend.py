"""SpiceFrontEnd: the vdagent protocol on one host channel (``com.redhat.spice.0``).

Lives in the transport actor and runs on its bridge thread. It answers the pure protocol itself
(capability handshake, REPLY to MONITORS_CONFIG, grab serials, MAX_CLIPBOARD, detailed-error
downgrade), writes MOUSE_STATE into the input actor's sink while it lends it (``tablet.py``),
else sends it to the input actor (one hop on the ``input`` lane with a 50 ms ttl: a stale mouse
state is worthless, so nothing is ever replayed) and everything for the
user session to the session gateway as ``spice.<snake_name>`` casts (see ``messages.py``).

Port policy (the rule): spice-server offers client-mouse mode exactly while the guest holds the
port open, and client-mode events are only usable when a session has told us its geometry. So,
like spice-vdagentd, we *want* the port only while the gateway's ``session.spice_ready`` event
says ``ready: true``. The front-end cannot close a port itself: when the link implements
:class:`PortGate` it calls ``link.set_wanted(ready)`` and the transport closes/reopens the port.
A link without that method keeps the port open (the handshake still runs; the input actor drops
events for unknown displays, exactly as the stock daemon). Must not import zmq.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from concierge.errors import ProtocolError
from concierge.runtime.node import Incoming, NodeContext
from concierge.transport.host.api import HostLink
from concierge.transport.spice import codec
from concierge.transport.spice.codec import Layout
from concierge.transport.spice.tablet import DirectTablet
from concierge.transport.spice.wire import (
    BY_SNAKE,
    CLIENT_PORT,
    GUEST_CAPS,
    MAX_CAP_WORDS,
    MOUSE_FRAME_PREFIX,
    MOUSE_FRAME_SIZE,
    MOUSE_STATE_STRUCT,
    PROTOCOL,
    SERVER_PORT,
    Cap,
    MsgType,
    Reassembler,
    caps_to_words,
    frame,
    words_to_caps,
)

log = logging.getLogger(__name__)

VD_AGENT_SUCCESS = 1
#: what a guest may send to the client (the server drops everything on port 2)
GUEST_SENDABLE = frozenset(
    {
        MsgType.REPLY,
        MsgType.CLIPBOARD,
        MsgType.CLIPBOARD_GRAB,
        MsgType.CLIPBOARD_REQUEST,
        MsgType.CLIPBOARD_RELEASE,
        MsgType.FILE_XFER_STATUS,
    }
)
_CLIPBOARD_TYPES = frozenset(
    {
        MsgType.CLIPBOARD,
        MsgType.CLIPBOARD_GRAB,
        MsgType.CLIPBOARD_REQUEST,
        MsgType.CLIPBOARD_RELEASE,
    }
)
_XFER_SUCCESS = 3
_MOUSE_SIZE = (13).to_bytes(4, "little")
_XFER_ERROR = 2


@runtime_checkable
class PortGate(Protocol):
    """Optional link capability: close the port while no session can serve it (see above)."""

    def set_wanted(self, wanted: bool) -> None:
        """Open (True) or release (False) the underlying port."""
        ...


class SpiceFrontEnd:
    """The vdagent front-end for one host channel; all methods run on the bridge thread."""

    def __init__(self, ctx: NodeContext, link: HostLink, settings: Mapping[str, Any] | None = None) -> None:
        cfg = dict(settings or {})
        self.ctx = ctx
        self.link = link
        self.input_actor: str = cfg.get("input_actor", "input")
        self.session_actor: str = cfg.get("session_actor", "session")
        self.mouse_ttl_s: float = float(cfg.get("mouse_ttl_s", 0.05))
        self._rx = Reassembler()
        self.client_caps: frozenset[int] = frozenset()
        self.layout = Layout()
        self.max_clipboard = -1
        self.ready = False
        self._serial = [0, 0, 0]  # per selection, shared by both directions (spice.md 2.5)
        #: the input actor's sink while it lends it to us (see tablet.py); else states are cast
        self.tablet = DirectTablet(ctx, self.input_actor)

    # --- FrontEnd ------------------------------------------------------------------------------
    def connected(self) -> None:
        """Host attached: start clean and announce our caps asking for the client's."""
        self._rx.reset()
        self._send(MsgType.ANNOUNCE_CAPABILITIES, {"request": 1, "caps": caps_to_words(GUEST_CAPS)})

    def disconnected(self) -> None:
        """Host gone: drop partial input; the session forgets client-owned state."""
        self._rx.reset()
        self.client_caps = frozenset()
        self.layout = Layout()
        self.ctx.cast(self.session_actor, "spice.client_disconnected", {})

    def close(self) -> None:
        """Transport stopping: drop the reassembly buffers and our copy of the tablet sink."""
        self._rx.reset()
        self.tablet.close()

    def received(self, data: bytes) -> None:
        """Bytes from the host: reassemble, decode, route. Bad input never loses the channel."""
        if (
            len(data) == MOUSE_FRAME_SIZE
            and data.startswith(MOUSE_FRAME_PREFIX)
            and data[24:28] == _MOUSE_SIZE
            and self._rx.idle()
        ):
            # Fast path for the common read: exactly one whole MOUSE_STATE frame.
            x, y, buttons, display_id = MOUSE_STATE_STRUCT.unpack_from(data, 28)
            if self.tablet.write(x, y, buttons, display_id):
                return
            self.ctx.cast(
                self.input_actor,
                "input.mouse",
                {"x": x, "y": y, "buttons": buttons, "display_id": display_id},
                lane="input",
                ttl_s=self.mouse_ttl_s,
            )
            return
        try:
            for msg in self._rx.feed(data):
                if msg.protocol != PROTOCOL:
                    self.ctx.count("spice.bad_protocol")
                    continue
                if msg.type == MsgType.MOUSE_STATE and len(msg.payload) == MOUSE_STATE_STRUCT.size:
                    x, y, buttons, display_id = MOUSE_STATE_STRUCT.unpack(msg.payload)
                    if self.tablet.write(x, y, buttons, display_id):
                        continue
                    self.ctx.cast(
                        self.input_actor,
                        "input.mouse",
                        {"x": x, "y": y, "buttons": buttons, "display_id": display_id},
                        lane="input",
                        ttl_s=self.mouse_ttl_s,
                    )
                    continue
                try:
                    self._dispatch(msg.port, msg.type, msg.payload)
                except Exception:  # loop boundary: one bad message costs itself, not the channel
                    self.ctx.count("spice.handler_errors")
                    log.exception("vdagent message %d failed", msg.type, extra={"event": "spice.handler_error"})
        except ProtocolError as err:
            # The stream is no longer trustworthy: drop all buffered bytes and resynchronise on
            # the next read (hosts write whole chunks, so the next read starts a header).
            self._rx.reset()
            self.ctx.count("spice.resync")
            log.warning("vdagent stream error, resynchronising: %s", err, extra={"event": "spice.resync"})

    # --- inbound -------------------------------------------------------------------------------
    def _dispatch(self, port: int, mtype: int, payload: bytes) -> None:
        try:
            kind, body, blob = codec.decode(mtype, payload, self.layout)
        except ProtocolError as err:
            self.ctx.count("spice.bad_message")
            log.warning("dropped vdagent message: %s", err, extra={"event": "spice.bad_message"})
            return
        self.ctx.count(f"spice.rx.{kind.snake}")
        match kind:
            case MsgType.ANNOUNCE_CAPABILITIES:
                self._on_announce(body)
                return
            case MsgType.MONITORS_CONFIG:
                # Acknowledge at once on the port it came from, as the stock daemon does.
                ack = {"type": int(MsgType.MONITORS_CONFIG), "error": VD_AGENT_SUCCESS}
                self._send(MsgType.REPLY, ack, port=port)
            case MsgType.CLIENT_DISCONNECTED:
                self._rx.reset(CLIENT_PORT)
                # Always forwarded (0.22.1 forgot it when the client never sent request=1).
            case MsgType.MAX_CLIPBOARD:
                self.max_clipboard = body["max"]
            case MsgType.CLIPBOARD_GRAB if self.layout.grab_serial:
                if not self._accept_client_grab(body):
                    self.ctx.count("spice.stale_grab")
                    return
            case MsgType.REPLY | MsgType.MOUSE_STATE:
                return  # a client REPLY needs nothing; a malformed-size MOUSE_STATE was decoded
        blobs = (blob,) if blob is not None else ()
        self.ctx.cast(self.session_actor, f"spice.{kind.snake}", body, blobs=blobs)

    def _on_announce(self, body: dict[str, Any]) -> None:
        if len(body["caps"]) > MAX_CAP_WORDS:  # unknown words: never forward megabytes of them
            body = {**body, "caps": body["caps"][:MAX_CAP_WORDS]}
        self.client_caps = words_to_caps(body["caps"])
        self.layout = Layout.from_caps(self.client_caps)
        if body["request"]:
            self._serial = [0, 0, 0]
            self._send(MsgType.ANNOUNCE_CAPABILITIES, {"request": 0, "caps": caps_to_words(GUEST_CAPS)})
        self.ctx.cast(self.session_actor, "spice.announce_capabilities", body)

    def _accept_client_grab(self, body: dict[str, Any]) -> bool:
        sel = body["selection"]
        if sel >= len(self._serial):
            return False
        expected = self._serial[sel]
        if body["serial"] == expected:
            self._serial[sel] = expected + 1
            return True
        # "client grab wins": our GRAB with serial-1 is in flight and the client discards it
        return bool(body["serial"] == (expected - 1) & 0xFFFFFFFF)

    # --- outbound ------------------------------------------------------------------------------
    def event(self, topic: str, body: Any) -> None:
        """Events the transport node forwards (``session.*``, ``lifecycle.*``).

        ``session.spice_ready {"ready": bool}`` from the gateway drives the port policy; it is
        re-published every gateway poll, so a lost event only delays the decision.
        """
        if topic == "session.spice_ready" and isinstance(body, dict):
            self._set_ready(bool(body.get("ready")))

    def deliver(self, msg: Incoming) -> bool:
        """Handle a ``spice.send`` or ``spice.mouse_*`` cast routed here; False if not ours."""
        if self.tablet.deliver(msg):
            return True
        if msg.type != "spice.send":
            return False
        body = msg.body if isinstance(msg.body, dict) else {}
        kind = BY_SNAKE.get(str(body.get("type", "")))
        inner = body.get("body") if isinstance(body.get("body"), dict) else {}
        if kind is None or kind not in GUEST_SENDABLE or inner is None:
            self.ctx.count("spice.send_refused")
            log.warning("refused spice.send of %r", str(body.get("type"))[:64], extra={"event": "spice.send_refused"})
            return True
        # large data arrives as several blob frames (the clipboard actor's blob_chunk): all of
        # it is the message (sending only the first cut 1 MiB of clipboard to 262,144 bytes)
        try:
            self.send(kind, inner, b"".join(msg.blobs))
        except (TypeError, ValueError, OverflowError, IndexError) as err:  # a field of the wrong type
            self.ctx.count("spice.send_refused")
            log.warning("refused spice.send of %s: %s", kind.snake, err, extra={"event": "spice.send_refused"})
        return True

    def send(self, kind: MsgType, body: dict[str, Any], blob: bytes = b"") -> None:
        """Send a guest->client message, applying the client's caps (never on port 2)."""
        if kind in _CLIPBOARD_TYPES and Cap.CLIPBOARD_BY_DEMAND not in self.client_caps:
            self.ctx.count("spice.clipboard_without_client")
            return
        if kind is MsgType.CLIPBOARD and 0 <= self.max_clipboard < len(blob):
            log.info("clipboard above the client's limit: sent empty", extra={"event": "spice.max_clip"})
            blob = b""
        counted = -1  # the selection whose grab serial a sent GRAB uses up
        if kind is MsgType.CLIPBOARD_GRAB and self.layout.grab_serial:
            sel = int(body.get("selection", 0))
            counted = sel if 0 <= sel < len(self._serial) else -1
            body = {**body, "serial": self._serial[sel] if counted >= 0 else 0}
        if kind is MsgType.FILE_XFER_STATUS and Cap.FILE_XFER_DETAILED_ERRORS not in self.client_caps:
            result = int(body.get("result", 0))
            result = _XFER_ERROR if result > _XFER_SUCCESS else result
            body = {**body, "result": result, "data": b""}
        if self._send(kind, body, blob=blob) and counted >= 0:
            self._serial[counted] += 1  # only a GRAB that left uses its serial up

    def _send(self, kind: MsgType, body: dict[str, Any], *, blob: bytes = b"", port: int = CLIENT_PORT) -> bool:
        """Encode and write one message; False when it could not be encoded or had no host."""
        if port == SERVER_PORT:
            port = CLIENT_PORT  # the server drops anything the guest writes on port 2
        try:
            payload = codec.encode(kind, body, self.layout, blob)
        except ProtocolError as err:
            self.ctx.count("spice.bad_send")
            log.warning("cannot send %s: %s", kind.name, err, extra={"event": "spice.bad_send"})
            return False
        if not self.link.connected:
            self.ctx.count("spice.tx_dropped")
            return False
        self.ctx.count(f"spice.tx.{kind.snake}")
        self.link.write(frame(port, kind, payload))
        return True

    def _set_ready(self, ready: bool) -> None:
        if ready == self.ready:
            return
        self.ready = ready
        state = "ready" if ready else "gone"
        log.info("session agent %s", state, extra={"event": "spice.port_policy"})
        if isinstance(self.link, PortGate):
            self.link.set_wanted(ready)

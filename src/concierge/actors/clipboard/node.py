"""ClipboardNode: the SPICE by-demand clipboard state machine for one graphical session.

State lives on the bridge thread (ownership per selection, grab serials, pending pastes);
the X11 or Wayland backend runs its own thread and reports through ``call_soon``. Nothing is
fetched before a paste. Must not import Xlib or Wayland code at module level.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from concierge.actors.clipboard.backend import ClipboardBackend
from concierge.actors.clipboard.formats import to_client_text, to_guest_text
from concierge.actors.clipboard.settings import ClipboardSettings
from concierge.actors.vdagent import Cap, ClipType, caps_from_body, has_cap, send
from concierge.actors.xlib_modules import XLIB_AT_CONNECT
from concierge.errors import ConfigError, ErrorCode
from concierge.runtime.node import Incoming, Node, TimerHandle

log = logging.getLogger(__name__)

NONE, GUEST, CLIENT = "none", "guest", "client"
ACCEPTS = frozenset(
    {
        "spice.clipboard_grab",
        "spice.clipboard_request",
        "spice.clipboard",
        "spice.clipboard_release",
        "spice.max_clipboard",
        "spice.announce_capabilities",
        "spice.client_disconnected",
        "session.deactivated",
        "session.activated",
        "clipboard.release_all",
        "clipboard.state",
    }
)


def pick_backend(settings: ClipboardSettings, env: Mapping[str, str]) -> ClipboardBackend | None:
    """Choose the backend for this session; None = clipboard unsupported here."""
    choice = settings.backend
    if choice == "auto":
        if settings.wayland_display or env.get("WAYLAND_DISPLAY"):
            choice = "wayland"
        elif settings.x11_display or env.get("DISPLAY"):
            choice = "x11"
        else:
            choice = "none"
    if choice == "x11":
        from concierge.actors.clipboard.x11 import X11Clipboard  # noqa: PLC0415 - Xlib if X11

        return X11Clipboard(settings.x11_display or env.get("DISPLAY"))
    if choice == "wayland":
        from concierge.actors.clipboard.wayland import (  # noqa: PLC0415 - Wayland only
            WaylandClipboard,
        )

        return WaylandClipboard.connect(settings.wayland_display or env.get("WAYLAND_DISPLAY", ""))
    if choice == "none":
        return None
    raise ConfigError(f"unknown clipboard backend {choice!r}", key="actors.clipboard.settings.backend")


@dataclass(slots=True)
class _Paste:
    """A guest app waiting for client data."""

    token: int
    clip_type: int
    timer: TimerHandle | None = None


class _Events:
    """Backend callbacks (backend thread) -> node methods (bridge thread)."""

    def __init__(self, node: ClipboardNode) -> None:
        self.node = node

    def guest_grab(self, selection: int, types: list[int]) -> None:
        self.node.ctx.call_soon(lambda: self.node.on_guest_grab(selection, types))

    def guest_release(self, selection: int) -> None:
        self.node.ctx.call_soon(lambda: self.node.on_guest_release(selection))

    def app_request(self, selection: int, clip_type: int, token: int) -> None:
        # directly: the REQUEST to the host is on the paste's critical path (see on_app_request)
        self.node.on_app_request(selection, clip_type, token)

    def guest_data(self, token: int, clip_type: int, data: bytes | None) -> None:
        # no hop to the bridge: on_guest_data only pops a dict entry (atomic) and casts
        # (thread-safe), and the answer is on the host's critical path
        self.node.on_guest_data(token, clip_type, data)

    def lost(self, reason: str) -> None:
        self.node.ctx.call_soon(lambda: self.node.on_lost(reason))


class ClipboardNode(Node):
    """Clipboard sharing between the SPICE client and the user's session."""

    accepts = ACCEPTS
    preload = ("concierge.actors.clipboard.x11", *XLIB_AT_CONNECT)  # the common backend

    def start(self) -> None:
        """Validate settings, connect the backend (it announces current guest owners)."""
        try:
            self.settings = msgspec.convert(dict(self.ctx.settings), ClipboardSettings)
        except msgspec.ValidationError as err:
            raise ConfigError(str(err), key=f"actors.{self.ctx.actor_id}.settings") from err
        self.client_caps: int | None = None
        self.max_clipboard = self.settings.max_clipboard
        self.active = True
        self.owner: dict[int, str] = {0: NONE, 1: NONE}
        self.guest_types: dict[int, list[int]] = {}
        self.serial: dict[int, int] = {0: 0, 1: 0}
        self.pastes: dict[int, collections.deque[_Paste]] = {
            0: collections.deque(),
            1: collections.deque(),
        }
        self.fetches: dict[int, tuple[int, int]] = {}  # token -> (selection, type)
        self._token = 0
        self.backend = pick_backend(self.settings, os.environ)
        if self.backend is None:
            log.warning("clipboard unsupported in this session", extra={"event": "clipboard.unsupported"})
            self.ctx.set_health("degraded", "clipboard unsupported in this session")
            return
        log.info("clipboard backend %s", self.backend.name, extra={"event": "clipboard.backend"})
        self.backend.start(_Events(self))

    def stop(self) -> None:
        """Drop ownership and stop the backend thread."""
        if self.backend is not None:
            self.backend.stop()

    # --- deliveries (bridge thread) -----------------------------------------------------------
    def handle(self, msg: Incoming) -> None:
        """Dispatch by type; every branch is a few dict operations and a queue post."""
        body: dict[str, Any] = dict(msg.body) if isinstance(msg.body, Mapping) else {}
        sel = body.get("selection", 0)
        if not isinstance(sel, int) or sel not in self.owner:
            sel = -1
        kind = msg.type
        if kind == "spice.announce_capabilities":
            self._on_caps(body)
        elif kind == "spice.max_clipboard":
            value = body.get("max", -1)
            self.max_clipboard = value if isinstance(value, int) else -1
        elif kind in ("spice.client_disconnected", "clipboard.release_all"):
            self._drop_client(send_release=False)
        elif kind == "session.deactivated":
            self._drop_client(send_release=True)
            self.active = False
        elif kind == "session.activated":
            self.active = True
            self._announce_guest()
        elif kind == "clipboard.state":
            pass  # a query: answered below
        elif sel < 0 or self.backend is None:
            self.ctx.count("clipboard.ignored")
            if kind == "spice.clipboard_request":
                self._send_data(max(sel, 0), ClipType.NONE, b"")
        elif kind == "spice.clipboard_grab":
            self._on_client_grab(sel, body)
        elif kind == "spice.clipboard_request":
            self._on_client_request(sel, body)
        elif kind == "spice.clipboard":
            self._on_client_data(sel, body, msg.blobs)
        elif kind == "spice.clipboard_release":
            self._on_client_release(sel)
        if msg.reply is not None:
            if kind == "clipboard.state":
                msg.reply.ok({"owner": self.owner, "serial": self.serial, "active": self.active})
            elif kind not in self.accepts:
                msg.reply.error(ErrorCode.UNKNOWN_TYPE, kind)
            else:
                msg.reply.ok(None)

    def _on_caps(self, body: Mapping[str, Any]) -> None:
        self.client_caps = caps_from_body(body)
        if body.get("request"):
            # a new client: serials restart, its predecessor's grabs are void
            for sel in self.owner:
                if self.owner[sel] == CLIENT:
                    self._release_in_guest(sel)
                self.serial[sel] = 0
            self._announce_guest()

    def _on_client_grab(self, sel: int, body: Mapping[str, Any]) -> None:
        serial = body.get("serial")
        if isinstance(serial, int) and self._client_has(Cap.CLIPBOARD_GRAB_SERIAL):
            expected = self.serial[sel]
            if serial == expected:
                self.serial[sel] = expected + 1
            elif serial != expected - 1:  # neither current nor "client grab wins": stale
                log.info("stale client grab ignored", extra={"event": "clipboard.stale_grab"})
                self.ctx.count("clipboard.stale_grab")
                return
        types = [t for t in body.get("types", []) if isinstance(t, int)]
        self._fail_pastes(sel)
        self.owner[sel] = CLIENT
        self.guest_types.pop(sel, None)
        if self.backend is None:
            return
        self.backend.grab(sel, types)

    def _on_client_release(self, sel: int) -> None:
        if self.owner[sel] == CLIENT:
            self._release_in_guest(sel)

    def _on_client_request(self, sel: int, body: Mapping[str, Any]) -> None:
        clip_type = body.get("type", 0)
        if self.owner[sel] != GUEST or clip_type not in self.guest_types.get(sel, []):
            self._send_data(sel, ClipType.NONE if not isinstance(clip_type, int) else clip_type, b"")
            return
        self._token += 1
        self.fetches[self._token] = (sel, clip_type)
        if self.backend is None:
            return
        self.backend.fetch(sel, clip_type, self._token)

    def _on_client_data(self, sel: int, body: Mapping[str, Any], blobs: tuple[bytes, ...]) -> None:
        clip_type = body.get("type", 0)
        raw = body.get("data")
        data = bytes(raw) if isinstance(raw, bytes | bytearray) else b"".join(blobs)
        queue = self.pastes[sel]
        if not queue:
            self.ctx.count("clipboard.unexpected_data")
            return
        paste = queue.popleft()
        if paste.timer is not None:
            paste.timer.cancel()
        if self.backend is None:
            return
        if clip_type != paste.clip_type or self.owner[sel] != CLIENT:
            self.backend.provide(paste.token, paste.clip_type, None)
            self._fail_pastes(sel)
            return
        if clip_type == ClipType.UTF8_TEXT:
            data = to_guest_text(data, self._client_has(Cap.GUEST_LINEEND_CRLF))
        self.ctx.count("clipboard.to_guest_bytes", len(data))
        self.backend.provide(paste.token, clip_type, data)

    # --- backend events (bridge thread) -------------------------------------------------------
    def on_guest_grab(self, sel: int, types: list[int]) -> None:
        """A guest app owns ``sel``: tell the client (with our serial), by demand."""
        self.owner[sel] = GUEST
        self.guest_types[sel] = types
        self._fail_pastes(sel)
        self._send_grab(sel)

    def on_guest_release(self, sel: int) -> None:
        """The guest owner is gone."""
        if self.owner.get(sel) == GUEST:
            self.owner[sel] = NONE
            self.guest_types.pop(sel, None)
            if self._may_send(sel):
                send(self.ctx, "clipboard_release", {"selection": sel})

    def on_app_request(self, sel: int, clip_type: int, token: int) -> None:
        """A guest app pastes from the client: ask the client for the data. Any thread: it
        reads ``owner``/``active``, appends to a deque (both atomic), casts (thread-safe) and
        arms the timeout on the bridge afterwards."""
        if self.backend is None:
            return
        if self.owner.get(sel) != CLIENT or not self.active:
            self.backend.provide(token, clip_type, None)
            return
        paste = _Paste(token, clip_type)
        self.pastes[sel].append(paste)
        send(self.ctx, "clipboard_request", {"selection": sel, "type": clip_type})
        self.ctx.call_soon(lambda: self._arm(sel, paste))

    def _arm(self, sel: int, paste: _Paste) -> None:
        if paste in self.pastes[sel]:  # not answered yet
            paste.timer = self.ctx.call_later(self.settings.request_timeout_s, lambda: self._expire(sel, paste))

    def on_guest_data(self, token: int, clip_type: int, data: bytes | None) -> None:
        """Data read from the guest owner for a client REQUEST (any thread: it touches only
        ``fetches``, with atomic dict operations, and thread-safe context methods)."""
        entry = self.fetches.pop(token, None)
        if entry is None:
            return
        sel, _ = entry
        if data is None:
            self._send_data(sel, clip_type, b"")
            return
        if clip_type == ClipType.UTF8_TEXT:
            data = to_client_text(data, self._client_has(Cap.GUEST_LINEEND_CRLF))
        if 0 <= self.max_clipboard < len(data):
            log.warning(
                "clipboard too large (%d > %d), discarding",
                len(data),
                self.max_clipboard,
                extra={"event": "clipboard.too_large"},
            )
            self._send_data(sel, clip_type, b"")
            return
        self._send_data(sel, clip_type, data)

    def on_lost(self, reason: str) -> None:
        """The backend's display connection died: report failing health (the supervisor
        restarts us; a new connection re-announces the guest owner)."""
        log.error("clipboard backend lost: %s", reason, extra={"event": "clipboard.lost"})
        self.ctx.set_health("failing", f"clipboard backend lost: {reason}")

    # --- internals ----------------------------------------------------------------------------
    def _client_has(self, cap: Cap) -> bool:
        return self.client_caps is not None and has_cap(self.client_caps, cap)

    def _may_send(self, sel: int) -> bool:
        if not self.active:
            return False
        if self.client_caps is None:
            return True  # caps not relayed (yet): let the gateway filter
        if not has_cap(self.client_caps, Cap.CLIPBOARD_BY_DEMAND):
            return False
        return sel == 0 or has_cap(self.client_caps, Cap.CLIPBOARD_SELECTION)

    def _send_grab(self, sel: int) -> None:
        if not self._may_send(sel):
            return
        serial = self.serial[sel]
        self.serial[sel] = serial + 1
        send(
            self.ctx,
            "clipboard_grab",
            {"selection": sel, "serial": serial, "types": self.guest_types[sel]},
        )
        self.ctx.count("clipboard.guest_grab")

    def _announce_guest(self) -> None:
        for sel, who in self.owner.items():
            if who == GUEST and sel in self.guest_types:
                self._send_grab(sel)

    def _send_data(self, sel: int, clip_type: int, data: bytes) -> None:
        step = max(1, self.settings.blob_chunk)
        blobs = tuple(data[i : i + step] for i in range(0, len(data), step))
        body = {"selection": sel, "type": int(clip_type)}
        self.ctx.count("clipboard.to_client_bytes", len(data))
        send(self.ctx, "clipboard", body, blobs=blobs)

    def _release_in_guest(self, sel: int) -> None:
        self.owner[sel] = NONE
        self._fail_pastes(sel)
        if self.backend is not None:
            self.backend.release(sel)

    def _drop_client(self, *, send_release: bool) -> None:
        for sel, who in list(self.owner.items()):
            if who == CLIENT:
                self._release_in_guest(sel)
            elif who == GUEST and send_release and self._may_send(sel):
                send(self.ctx, "clipboard_release", {"selection": sel})
            self.serial[sel] = 0
        self.fetches.clear()  # atomic: a backend thread may pop concurrently

    def _fail_pastes(self, sel: int) -> None:
        queue = self.pastes[sel]
        while queue:
            paste = queue.popleft()
            if paste.timer is not None:
                paste.timer.cancel()
            if self.backend is not None:
                self.backend.provide(paste.token, paste.clip_type, None)

    def _expire(self, sel: int, paste: _Paste) -> None:
        if paste in self.pastes[sel]:
            self.pastes[sel].remove(paste)
            log.warning("client did not send clipboard data", extra={"event": "clipboard.timeout"})
            if self.backend is not None:
                self.backend.provide(paste.token, paste.clip_type, None)

"""The minimal session agent: ``python -m concierge.actors.session.agent`` (no ZeroMQ, no actors).

``concierge session`` (the per-user supervisor with the link, display, clipboard and desktop
actors) is what users run. This single-process agent remains for the smallest guests and for
tests of the gateway: it attaches to the gateway endpoint of its uid, reports the RandR geometry
(and every change of it) so the mouse mapping works, and answers what it cannot serve the way a
client expects (:class:`SessionRouter`: an empty paste, a refused file transfer).
A single-threaded select() loop: this process has two fds and no latency-critical work.
Must not import zmq.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from concierge.actors.session import framing
from concierge.actors.session.messages import SOCKET_NAME, WIRE_VERSION
from concierge.actors.session.randr import RandrSource
from concierge.errors import ProtocolError, UnavailableError
from concierge.transport.spice.messages import XFER_DISABLED

log = logging.getLogger("concierge.session")

#: which user actor serves which message (the session supervisor will start these actors)
ROUTES = {
    "spice.monitors_config": "display",
    "spice.graphics_device_info": "display",
    "spice.display_config": "display",
    "spice.clipboard": "clipboard",
    "spice.clipboard_grab": "clipboard",
    "spice.clipboard_request": "clipboard",
    "spice.clipboard_release": "clipboard",
    "spice.max_clipboard": "clipboard",
    "spice.announce_capabilities": "clipboard",
    "spice.client_disconnected": "clipboard",
    "spice.file_xfer_start": "filexfer",
    "spice.file_xfer_status": "filexfer",
    "spice.file_xfer_data": "filexfer",
}
Handler = Callable[[str, Any, tuple[bytes, ...]], None]
#: a ``spice.send`` body and its blobs
Reply = tuple[dict[str, Any], tuple[bytes, ...]]


class SessionRouter:
    """Delivers gateway messages to registered user actors by :data:`ROUTES`."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.unrouted: Counter[str] = Counter()

    def register(self, actor: str, handler: Handler) -> None:
        """Attach the handler of one user actor (the session supervisor's job)."""
        self.handlers[actor] = handler

    def deliver(self, type_: str, body: Any, blobs: tuple[bytes, ...]) -> Reply | None:
        """Route one message; without its actor, return the refusal the client expects.

        A client must never wait on a missing actor: a paste request gets an empty
        CLIPBOARD of type NONE, a file transfer a DISABLED status (as for greeters).
        """
        handler = self.handlers.get(ROUTES.get(type_, ""))
        if handler is not None:
            handler(type_, body, blobs)
            return None
        self.unrouted[type_] += 1
        log.debug("no actor for %s", type_, extra={"event": "session.unrouted"})
        body = body if isinstance(body, dict) else {}
        if type_ == "spice.clipboard_request":
            selection = int(body.get("selection", 0))
            return {"type": "clipboard", "body": {"selection": selection, "type": 0}}, (b"",)
        if type_ == "spice.file_xfer_start":
            status = {"id": int(body.get("id", 0)), "result": XFER_DISABLED, "data": b""}
            return {"type": "file_xfer_status", "body": status}, ()
        return None


class SessionAgent:
    """Connection to the gateway plus the geometry source."""

    def __init__(self, runtime_dir: Path, display: str | None, router: SessionRouter | None = None) -> None:
        self.path = runtime_dir / "users" / str(os.getuid()) / SOCKET_NAME
        self.display = display or os.environ.get("DISPLAY", "")
        self.router = router or SessionRouter()
        self.sock: socket.socket | None = None
        self.reader = framing.FrameReader()
        self.welcome: dict[str, Any] | None = None
        self.active = False
        self._last_monitors: list[Any] | None = None

    def connect(self, attempts: int = 60, delay_s: float = 1.0) -> None:
        """Connect (retrying while the gateway starts) and say hello."""
        for attempt in range(attempts):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                sock.connect(str(self.path))
            except OSError as err:
                sock.close()
                if attempt + 1 == attempts:
                    raise UnavailableError(f"gateway {self.path}: {err.strerror}") from err
                time.sleep(delay_s)
                continue
            self.sock = sock
            self.send("hello", {"version": WIRE_VERSION, "display": self.display})
            return

    def send(self, type_: str, body: Any = None, blobs: tuple[bytes, ...] = ()) -> None:
        """Blocking send of one frame (this process has nothing else to do meanwhile)."""
        if self.sock is None:
            raise UnavailableError("not connected")
        self.sock.sendall(framing.encode(type_, body, blobs))

    def report_geometry(self, source: RandrSource) -> None:
        """Send the layout if it changed since the last report."""
        monitors = source.monitors()
        if monitors != self._last_monitors:
            self._last_monitors = list(monitors)
            self.send("geometry", {"monitors": monitors})

    def on_frame(self, type_: str, body: Any, blobs: tuple[bytes, ...]) -> bool:
        """Handle one gateway frame; False when the gateway refused us."""
        if type_ == "welcome":
            self.welcome = body
        elif type_ == "reject":
            log.error(
                "gateway refused this agent: %s",
                (body or {}).get("reason"),
                extra={"event": "session.rejected"},
            )
            return False
        elif type_ == "active":
            self.active = bool((body or {}).get("active"))
        else:
            refusal = self.router.deliver(type_, body, blobs)
            if refusal is not None:
                self.send("spice.send", refusal[0], refusal[1])
        return True

    def run(self, source: RandrSource) -> int:
        """Main loop until the gateway goes away; returns the exit code."""
        if self.sock is None:
            raise UnavailableError("not connected")
        self.report_geometry(source)
        while True:
            # Xlib may have queued events while reading replies (the fd is then no longer
            # readable): drain before every wait, or a layout change could be missed.
            if source.drain():
                self.report_geometry(source)
                continue
            xfd, sfd = source.fileno(), self.sock.fileno()
            ready, _, _ = select.select([sfd, xfd], [], [])
            if sfd in ready:
                data = self.sock.recv(262144)
                if not data:
                    log.info("gateway closed the connection", extra={"event": "session.gateway_gone"})
                    return 75  # EX_TEMPFAIL: restarted by the unit
                try:
                    for frame in self.reader.feed(data):
                        if not self.on_frame(*frame):
                            return 77  # EX_NOPERM: a refused agent must not hot-loop
                except ProtocolError as err:
                    log.error("bad frame from gateway: %s", err, extra={"event": "session.bad_frame"})
                    return 76


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``concierge session``."""
    parser = argparse.ArgumentParser(prog="concierge session")
    parser.add_argument("--runtime-dir", default="/run/concierge", type=Path)
    parser.add_argument("--display", default=None, help="X display (default: $DISPLAY)")
    parser.add_argument("--connect-attempts", default=60, type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        source = RandrSource(args.display)
        agent = SessionAgent(args.runtime_dir, args.display)
        agent.connect(attempts=args.connect_attempts)
        return agent.run(source)
    except UnavailableError as err:
        log.error("%s", err, extra={"event": "session.unavailable"})
        return 69


if __name__ == "__main__":
    raise SystemExit(main())

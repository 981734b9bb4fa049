"""The answer side of one request received by a bridge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from concierge.errors import ErrorCode
from concierge.runtime import envelope

if TYPE_CHECKING:
    from concierge.runtime.bridge import Bridge


class BridgeReplyPort:
    """Answers one request exactly once, from any thread.

    ``route`` set: the request came through the inbox ROUTER and the answer goes back along it.
    ``route`` None: it came on the lane; the answer goes to the requester's lane when it fits,
    sent by the answering thread itself (no hand-off to the bridge thread), else to its inbox.
    """

    __slots__ = ("_bridge", "_done", "_header", "_route")

    def __init__(self, bridge: Bridge, header: envelope.Header, route: bytes | None = None) -> None:
        self._bridge = bridge
        self._header = header
        self._route = route
        self._done = False

    def _send(self, kind: str, body: Any, blobs: tuple[bytes, ...]) -> None:
        if self._done:
            return
        self._done = True
        req, bridge = self._header, self._bridge
        header = envelope.Header(kind, req.type, 0, req.id, bridge.actor_id, req.src)
        if self._route is not None:
            routed = [self._route, *envelope.encode(header, body, blobs)]
            bridge.submit(lambda: bridge.send_inbox(routed))
            return
        if not blobs and bridge.lane_send(req.src, envelope.encode_datagram(header, body)):
            return
        frames = envelope.encode(header, body, blobs)
        bridge.submit(lambda: bridge.cast_frames(req.src, "default", frames))

    def ok(self, body: Any = None, blobs: tuple[bytes, ...] = ()) -> None:
        """Send the successful result."""
        self._send("rep", body, blobs)

    def error(self, code: ErrorCode, message: str, *, retryable: bool = False) -> None:
        """Send an error reply."""
        self._send("err", {"code": str(code), "message": message, "retryable": retryable}, ())

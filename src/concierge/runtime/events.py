"""The event plane of one bridge: publish to the supervisor's proxy, receive by topic prefix.

Events are lossy by design (a PUB drops when its queue is full): never state that cannot be
re-queried. Both sockets are made on first use, so a process that never publishes or
subscribes pays for neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import zmq

from concierge.errors import ProtocolError
from concierge.runtime import envelope, sockets
from concierge.runtime.loop import readable
from concierge.runtime.node import Incoming

if TYPE_CHECKING:
    from concierge.runtime.bridge import Bridge


class EventPlane:
    """PUB and SUB sockets of a bridge; everything runs on its thread."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self._pub: zmq.Socket[bytes] | None = None
        self._sub: zmq.Socket[bytes] | None = None

    def publish(self, topic: str, body: Any) -> None:
        """Encode here (any thread), send on the bridge thread."""
        bridge = self._bridge
        header = envelope.Header("evt", topic, 0, 0, bridge.actor_id, "*")
        frames = [topic.encode(), *envelope.encode(header, body)]

        def send() -> None:
            if self._pub is None:
                self._pub = sockets.publisher(bridge.zctx, bridge.layout.url(bridge.layout.events_in))
            try:
                self._pub.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                bridge.count("evt.dropped")

        bridge.submit(send)

    def subscribe(self, topic: str) -> None:
        """Receive events whose topic starts with ``topic`` (bridge thread)."""
        bridge = self._bridge
        if self._sub is None:
            self._sub = sockets.subscriber(bridge.zctx, bridge.layout.url(bridge.layout.events_out))
            bridge.watch_zmq(self._sub, self._drain)
        self._sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
        bridge.touched(self._sub)  # the option is sent like a message: re-check for input

    def _drain(self) -> None:
        sub, bridge = self._sub, self._bridge
        assert sub is not None
        while readable(sub):  # no exception per drain
            frames = sub.recv_multipart(zmq.NOBLOCK)
            try:
                header, body, blobs = envelope.decode(frames[1:])
            except ProtocolError:
                continue
            if header.src != bridge.actor_id:
                bridge.deliver(Incoming("evt", header.type, body, header.src, blobs=blobs))

    def close(self) -> None:
        """Close both sockets."""
        for sock in (self._pub, self._sub):
            if sock is not None:
                sock.close(0)

"""A QGA route: which capability actor serves a command and how its answer is rendered.

The front-end validates arguments against the QAPI schema first, then sends
``to_request(args)`` as the body of request ``request`` to ``actor`` and renders the reply body
with ``render``. Capability errors carry qemu-ga's exact ``desc`` text in their message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def identity(value: Any) -> Any:
    """Pass a value through unchanged."""
    return value


@dataclass(frozen=True, slots=True)
class QgaRoute:
    """How one QGA command reaches the actor that owns the capability."""

    command: str
    actor: str
    request: str
    timeout_s: float = 10.0
    success_response: bool = True
    allowed_while_frozen: bool = False
    #: add ``"channel": <host channel name>`` to a dict request body (the freeze lease must know
    #: which host asked, to thaw when that host goes away)
    with_channel: bool = False
    #: idempotent commands whose answer must not be lost to a restarting actor (a thaw while the
    #: lifecycle actor restarts after a crash): an UNAVAILABLE reply is retried until the deadline
    retry_unavailable: bool = False
    to_request: Callable[[dict[str, Any]], Any] = identity
    render: Callable[[Any], Any] = identity
    #: the name under which the actor pushes this answer when it changes
    #: (``concierge.runtime.pushed``); a command without arguments is then answered inline
    #: from the last push, completed by ``live``. Empty: always routed.
    pushed: str = ""
    #: turns the pushed answer into the reply body (adds what changes too often to push)
    live: Callable[[Any], Any] = identity

"""QGA routes served by the guestops actor.

The actor's request bodies are the QGA ``arguments`` unchanged and its replies are qemu-ga's
``return`` values, so every route passes both through (``identity``). Errors carry qemu-ga's
``desc`` text; FORBIDDEN (policy) must be sent as class ``CommandNotFound``, like a command
disabled with ``qemu-ga -b``. Must not import the actor's implementation, only its messages.
"""

from __future__ import annotations

from concierge.actors.guestops.messages import ACTOR_ID, QGA_COMMANDS, TIMEOUTS
from concierge.transport.qga.commands.registry import QgaRoute

ROUTES: tuple[QgaRoute, ...] = tuple(
    QgaRoute(
        command=command,
        actor=ACTOR_ID,
        request=request,
        timeout_s=TIMEOUTS.get(request, 10.0),
    )
    for request, command in QGA_COMMANDS.items()
)

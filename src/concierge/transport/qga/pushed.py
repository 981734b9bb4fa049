"""QGA answers given inline from an actor's pushed answer (``concierge.runtime.pushed``)."""

from __future__ import annotations

import logging
from typing import Any

from concierge.runtime.node import NodeContext
from concierge.runtime.pushed import follower_for
from concierge.transport.qga.commands.registry import QgaRoute

log = logging.getLogger(__name__)


def pushed_body(ctx: NodeContext, route: QgaRoute) -> Any:
    """The reply body for ``route`` from its owner's last push, or None (then route it)."""
    follower = follower_for(ctx)
    pushed = follower.get(route.actor, route.pushed) if follower is not None else None
    if pushed is None:
        return None
    try:
        return route.live(pushed)
    except Exception:  # loop boundary: a bad push costs the inline answer, not the command
        log.exception("cannot complete pushed %s", route.pushed, extra={"event": "qga.pushed_bug"})
        return None

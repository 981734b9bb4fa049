"""QGA command routes: one module per capability actor, collected by :func:`all_routes`."""

from __future__ import annotations

from concierge.transport.qga.commands.registry import QgaRoute


def all_routes() -> dict[str, QgaRoute]:
    """Every QGA command this agent knows, by command name."""
    from concierge.transport.qga.commands import guestops, lifecycle, monitor  # noqa: PLC0415

    routes: dict[str, QgaRoute] = {}
    for module in (monitor, lifecycle, guestops):
        for route in module.ROUTES:
            routes[route.command] = route
    return routes

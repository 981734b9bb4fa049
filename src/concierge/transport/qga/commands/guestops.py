"""QGA routes served by the guestops actor."""

from __future__ import annotations

from concierge.transport.qga.commands.registry import QgaRoute

ROUTES: tuple[QgaRoute, ...] = ()

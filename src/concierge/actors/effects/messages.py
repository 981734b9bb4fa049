"""Public message API of the ``effects`` actor (runs as the user in the graphical session).

Casts (or requests, answered with ``{"applied": [...], "unsupported": [...]}``) from the
session gateway:

- ``spice.display_config`` :class:`DisplayConfig`: flags DISABLE_WALLPAPER (1),
  DISABLE_FONT_SMOOTH (2), DISABLE_ANIMATION (4), SET_COLOR_DEPTH (8). A new config first
  restores, then applies; flags 0 just restores.
- ``spice.client_disconnected`` / ``session.deactivated``: restore the user's settings.
- ``effects.state`` (request): ``{"active": bool, "saved": {key: old value or None}}``.

Nothing is sent back (DISPLAY_CONFIG has no reply in the protocol). The gateway should only
announce VD_AGENT_CAP_DISPLAY_CONFIG when this actor runs. Standard library only.
"""

from __future__ import annotations

from typing import TypedDict


class DisplayConfig(TypedDict, total=False):
    """``VDAgentDisplayConfig``."""

    flags: int
    depth: int

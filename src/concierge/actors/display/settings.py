"""Settings of the ``display`` actor (``[actors.display.settings]``). msgspec only."""

from __future__ import annotations

import msgspec


class DisplaySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which backend applies layouts, and where."""

    #: "auto" (Mutter on GNOME, sway IPC on sway, X11 RandR with $DISPLAY, else none),
    #: "x11", "mutter", "sway", "none"
    backend: str = "auto"
    #: sway IPC socket; empty = $SWAYSOCK
    sway_socket: str = ""
    #: X display to use; empty = $DISPLAY
    x11_display: str = ""
    #: actor that receives ``input.geometry``; ``concierge session`` sets "session" (its link,
    #: which relays it to the root gateway and so to the input actor)
    geometry_to: str = "input"
    #: refresh rate of modes the actor creates (X11)
    refresh_hz: int = 60
    #: dots per inch used to derive the screen's millimetre size when the client sends none
    dpi: int = 96
    #: Mutter ApplyMonitorsConfig method: 1 = temporary, 2 = persistent
    mutter_method: int = 1

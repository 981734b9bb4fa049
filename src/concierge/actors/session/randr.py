"""Display geometry of an X11 session through RandR (python-xlib, imported lazily).

``display_id`` is the output's index in the screen resources, the same fallback mapping
spice-vdagent uses when GRAPHICS_DEVICE_INFO cannot name a connector. Outputs without a CRTC
(disabled) are left out. Must not import zmq; runs in the session process only.
"""

from __future__ import annotations

from typing import Any

from concierge.actors.session.messages import MonitorGeometry
from concierge.errors import UnavailableError

_MASK_SCREEN, _MASK_CRTC, _MASK_OUTPUT = 1, 2, 4  # RRScreenChange/CrtcChange/OutputChange


class RandrSource:
    """One X connection that reports the layout and says when it changed."""

    def __init__(self, display: str | None) -> None:
        try:
            from Xlib import display as xdisplay  # noqa: PLC0415 - optional [x11] extra
            from Xlib.error import DisplayError  # noqa: PLC0415
        except ImportError as err:
            raise UnavailableError("python-xlib is not installed") from err
        try:
            self._d: Any = xdisplay.Display(display)
        except (DisplayError, OSError, ValueError) as err:
            raise UnavailableError(f"cannot open X display {display!r}: {err}") from err
        self._root = self._d.screen().root
        self.has_randr = bool(self._d.has_extension("RANDR"))
        if self.has_randr:
            self._root.xrandr_select_input(_MASK_SCREEN | _MASK_CRTC | _MASK_OUTPUT)
            self._d.flush()

    def fileno(self) -> int:
        """The X connection's fd, to wait on together with the gateway socket."""
        return int(self._d.fileno())

    def drain(self) -> bool:
        """Consume pending X events; True if any (the layout may have changed)."""
        seen = False
        while self._d.pending_events():
            self._d.next_event()
            seen = True
        return seen

    def monitors(self) -> list[MonitorGeometry]:
        """The enabled outputs in desktop coordinates."""
        if not self.has_randr:
            geo = self._root.get_geometry()
            return [{"x": 0, "y": 0, "width": geo.width, "height": geo.height, "display_id": 0}]
        res = self._root.xrandr_get_screen_resources()
        out: list[MonitorGeometry] = []
        for index, output in enumerate(res.outputs):
            info = self._d.xrandr_get_output_info(output, res.config_timestamp)
            if not info.crtc:
                continue
            crtc = self._d.xrandr_get_crtc_info(info.crtc, res.config_timestamp)
            if crtc.width and crtc.height:
                out.append(
                    {
                        "x": crtc.x,
                        "y": crtc.y,
                        "width": crtc.width,
                        "height": crtc.height,
                        "display_id": index,
                    }
                )
        return out

    def close(self) -> None:
        """Close the X connection."""
        self._d.close()

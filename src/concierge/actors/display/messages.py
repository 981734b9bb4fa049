"""Public message API of the ``display`` actor (runs as the user in the graphical session).

Casts (or requests; a request is also answered with ``{"applied": bool, "monitors": [...]}``)
it accepts from the session gateway, bodies = vd_agent.h structs in snake_case:

- ``spice.monitors_config`` :class:`MonitorsConfig`. Answered to the client with
  ``spice.send {"type": "reply", "body": {"type": 2, "error": 1|2}}`` (SUCCESS only when the
  layout was really applied) and followed by ``input.geometry`` to the ``input`` actor.
- ``spice.graphics_device_info`` :class:`GraphicsDeviceInfo`: maps SPICE display ids
  (channel_id + monitor_id) to output indexes (device_display_id).
- ``spice.announce_capabilities`` ``{"request": int, "caps": [u32]}``: client caps (SPARSE).
- ``display.geometry`` (request, no body): the current layout, ``{"monitors": [...]}``.

Sent: ``input.geometry`` :class:`Geometry` (cast to ``input``), after every apply and at start.
Standard library only.
"""

from __future__ import annotations

from typing import TypedDict


class MonConfig(TypedDict, total=False):
    """``VDAgentMonConfig`` (height before width on the wire; names here are what matter)."""

    height: int
    width: int
    depth: int
    x: int
    y: int


class MonitorMM(TypedDict, total=False):
    """``VDAgentMonitorMM``: the PHYSICAL_SIZE tail, one per monitor, millimetres."""

    height: int
    width: int


class MonitorsConfig(TypedDict, total=False):
    """``VDAgentMonitorsConfig``; ``physical_sizes`` only with FLAG_PHYSICAL_SIZE (2)."""

    num_of_monitors: int
    flags: int
    monitors: list[MonConfig]
    physical_sizes: list[MonitorMM]


class DeviceDisplayInfo(TypedDict, total=False):
    """``VDAgentDeviceDisplayInfo``."""

    channel_id: int
    monitor_id: int
    device_display_id: int
    device_address: str | bytes


class GraphicsDeviceInfo(TypedDict, total=False):
    """``VDAgentGraphicsDeviceInfo``."""

    count: int
    display_info: list[DeviceDisplayInfo]


class Rect(TypedDict):
    """One monitor of the desktop in desktop pixels."""

    x: int
    y: int
    width: int
    height: int


class Geometry(TypedDict):
    """``input.geometry`` body: monitors in SPICE display-id order (index = display id)."""

    monitors: list[Rect]

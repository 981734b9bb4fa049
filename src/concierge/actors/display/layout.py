"""Pure layout logic: a MONITORS_CONFIG body -> the monitors to enable, per SPICE display id.

Handles sparse configs (index = display id, 0x0 = disabled), USE_POS, the PHYSICAL_SIZE tail,
and zero-basing; maps display ids to output indexes with GRAPHICS_DEVICE_INFO.
No I/O; must not import X11 or D-Bus code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from concierge.actors.vdagent import FLAG_PHYSICAL_SIZE, FLAG_USE_POS

MAX_MONITORS = 64
MAX_DIMENSION = 16384


class LayoutError(ValueError):
    """The MONITORS_CONFIG body is malformed (counts, sizes)."""


@dataclass(frozen=True, slots=True)
class Monitor:
    """One enabled monitor: where it goes, its size, and its physical size if known."""

    display_id: int
    x: int
    y: int
    width: int
    height: int
    depth: int = 32
    width_mm: int = 0
    height_mm: int = 0


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise LayoutError(f"{what} is not an integer")
    return value


def parse_monitors_config(body: Mapping[str, Any]) -> tuple[list[Monitor], list[int]]:
    """Return (enabled monitors, disabled display ids) for a MONITORS_CONFIG body."""
    monitors = body.get("monitors")
    if not isinstance(monitors, list):
        raise LayoutError("monitors is not a list")
    count = _int(body.get("num_of_monitors", len(monitors)), "num_of_monitors")
    if count != len(monitors) or count > MAX_MONITORS:
        raise LayoutError(f"num_of_monitors {count} does not match {len(monitors)} entries")
    flags = _int(body.get("flags", 0), "flags")
    physical = body.get("physical_sizes") or []
    if flags & FLAG_PHYSICAL_SIZE and physical and len(physical) != count:
        raise LayoutError("physical size tail does not match the monitor count")
    enabled: list[Monitor] = []
    disabled: list[int] = []
    next_x = 0
    for display_id, raw in enumerate(monitors):
        if not isinstance(raw, Mapping):
            raise LayoutError("monitor entry is not a struct")
        width, height = _int(raw.get("width"), "width"), _int(raw.get("height"), "height")
        if width == 0 or height == 0:
            disabled.append(display_id)
            continue
        if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
            raise LayoutError(f"monitor {display_id} size {width}x{height} out of range")
        if flags & FLAG_USE_POS:
            x, y = _int(raw.get("x", 0), "x"), _int(raw.get("y", 0), "y")
        else:
            x, y = next_x, 0
        next_x = x + width
        mm = physical[display_id] if flags & FLAG_PHYSICAL_SIZE and physical else {}
        enabled.append(
            Monitor(
                display_id,
                x,
                y,
                width,
                height,
                depth=int(raw.get("depth", 32) or 32),
                width_mm=int(mm.get("width", 0)) if isinstance(mm, Mapping) else 0,
                height_mm=int(mm.get("height", 0)) if isinstance(mm, Mapping) else 0,
            )
        )
    if not enabled:
        raise LayoutError("every monitor is disabled")
    min_x = min(m.x for m in enabled)
    min_y = min(m.y for m in enabled)
    if min_x or min_y:
        enabled = [
            Monitor(
                m.display_id,
                m.x - min_x,
                m.y - min_y,
                m.width,
                m.height,
                m.depth,
                m.width_mm,
                m.height_mm,
            )
            for m in enabled
        ]
    return enabled, disabled


def bounding_box(monitors: Sequence[Monitor]) -> tuple[int, int]:
    """Width and height of the desktop that holds every monitor (zero-based layout)."""
    return max(m.x + m.width for m in monitors), max(m.y + m.height for m in monitors)


def output_map(body: Mapping[str, Any]) -> dict[int, int]:
    """GRAPHICS_DEVICE_INFO -> {SPICE display id: output (connector) index}."""
    entries = body.get("display_info") or []
    out: dict[int, int] = {}
    if not isinstance(entries, list):
        raise LayoutError("display_info is not a list")
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise LayoutError("display_info entry is not a struct")
        display_id = _int(entry.get("channel_id", 0), "channel_id") + _int(entry.get("monitor_id", 0), "monitor_id")
        out[display_id] = _int(entry.get("device_display_id", display_id), "device_display_id")
    return out


def cvt_reduced_timing(width: int, height: int, refresh: int) -> dict[str, int]:
    """A CVT reduced-blanking style modeline (what monitors of VMs accept), as RandR fields."""
    h_total = width + 160
    v_blank_lines = max(6 + 3 + 6, int(460e-6 * refresh * (height + 20)) + 1)
    v_total = height + v_blank_lines
    return {
        "width": width,
        "height": height,
        "dot_clock": h_total * v_total * refresh,
        "h_sync_start": width + 48,
        "h_sync_end": width + 80,
        "h_total": h_total,
        "h_skew": 0,
        "v_sync_start": height + 3,
        "v_sync_end": height + 9,
        "v_total": v_total,
    }

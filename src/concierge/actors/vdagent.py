"""Constants of the SPICE vdagent protocol (spice-protocol 0.14.3 ``vd_agent.h``) used by the
per-user session actors: message names, capability bits, clipboard types, file-transfer results.

Also the one helper every session actor needs to read the client's capability words.
Standard library and the SPICE wire constants only (imported by ``messages.py`` files).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from concierge.transport.spice.wire import Cap, MsgType

__all__ = ["Cap", "ClipType", "MsgType", "Selection", "XferResult", "caps_from_body", "has_cap", "send"]


#: ``VD_AGENT_SUCCESS`` / ``VD_AGENT_ERROR`` in a REPLY
REPLY_SUCCESS = 1
REPLY_ERROR = 2

#: MONITORS_CONFIG flags
FLAG_USE_POS = 1
FLAG_PHYSICAL_SIZE = 2

#: DISPLAY_CONFIG flags
DISABLE_WALLPAPER = 1
DISABLE_FONT_SMOOTH = 2
DISABLE_ANIMATION = 4
SET_COLOR_DEPTH = 8


class ClipType(enum.IntEnum):
    """``VD_AGENT_CLIPBOARD_*`` data types."""

    NONE = 0
    UTF8_TEXT = 1
    IMAGE_PNG = 2
    IMAGE_BMP = 3
    IMAGE_TIFF = 4
    IMAGE_JPG = 5
    FILE_LIST = 6


class Selection(enum.IntEnum):
    """``VD_AGENT_CLIPBOARD_SELECTION_*``."""

    CLIPBOARD = 0
    PRIMARY = 1
    SECONDARY = 2


class XferResult(enum.IntEnum):
    """``VD_AGENT_FILE_XFER_STATUS_*``."""

    CAN_SEND_DATA = 0
    CANCELLED = 1
    ERROR = 2
    SUCCESS = 3
    NOT_ENOUGH_SPACE = 4
    SESSION_LOCKED = 5
    VDAGENT_NOT_CONNECTED = 6
    DISABLED = 7


def caps_from_body(body: Mapping[str, Any]) -> int:
    """Read an ANNOUNCE_CAPABILITIES body's ``caps`` (u32 words, or one int) as one bitmask."""
    raw = body.get("caps", 0)
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    mask = 0
    if isinstance(raw, list | tuple):
        for index, word in enumerate(raw):
            if isinstance(word, int) and not isinstance(word, bool):
                mask |= (word & 0xFFFFFFFF) << (32 * index)
    return mask


def has_cap(mask: int, cap: Cap) -> bool:
    """True when bit ``cap`` is set in the peer's capability mask."""
    return bool(mask >> int(cap) & 1)


def send(ctx: Any, type_: str, body: Mapping[str, Any], blobs: tuple[bytes, ...] = ()) -> None:
    """Send one guest->client vdagent message through the session gateway."""
    ctx.cast("session", "spice.send", {"type": type_, "body": dict(body)}, blobs=blobs)

"""Clipboard formats: SPICE clipboard types <-> X11 targets / MIME types, and line endings.

Pure functions; no X11 or Wayland imports (both backends share these tables).
"""

from __future__ import annotations

from concierge.actors.vdagent import ClipType

TEXT_TARGETS = ("UTF8_STRING", "text/plain;charset=utf-8", "STRING", "TEXT", "text/plain")
IMAGE_TARGETS: dict[ClipType, tuple[str, ...]] = {
    ClipType.IMAGE_PNG: ("image/png",),
    ClipType.IMAGE_BMP: ("image/bmp", "image/x-bmp", "image/x-MS-bmp", "image/x-win-bitmap"),
    ClipType.IMAGE_TIFF: ("image/tiff",),
    ClipType.IMAGE_JPG: ("image/jpeg",),
}
#: conversions offered on top of what the owner has: {have: want}
CONVERTIBLE = {ClipType.IMAGE_BMP: ClipType.IMAGE_PNG, ClipType.IMAGE_PNG: ClipType.IMAGE_BMP}


def targets_for(clip_type: int) -> tuple[str, ...]:
    """The X11 targets / MIME types that represent ``clip_type``."""
    if clip_type == ClipType.UTF8_TEXT:
        return TEXT_TARGETS
    try:
        return IMAGE_TARGETS.get(ClipType(clip_type), ())
    except ValueError:
        return ()


def type_of_target(target: str) -> ClipType | None:
    """The SPICE type a target / MIME type maps to, or None if unsupported."""
    if target in TEXT_TARGETS:
        return ClipType.UTF8_TEXT
    for clip_type, names in IMAGE_TARGETS.items():
        if target in names:
            return clip_type
    return None


def owner_types(targets: list[str]) -> list[int]:
    """SPICE types to GRAB for an owner offering ``targets`` (plus convertible images)."""
    found: list[int] = []
    for target in targets:
        clip_type = type_of_target(target)
        if clip_type is not None and clip_type not in found:
            found.append(int(clip_type))
    for have, want in CONVERTIBLE.items():
        if have in found and want not in found:
            found.append(int(want))
    return found


def pick_target(clip_type: int, offered: list[str]) -> tuple[str, int] | None:
    """The best offered target for ``clip_type``: (target, the type its bytes are in)."""
    for target in targets_for(clip_type):
        if target in offered:
            return target, clip_type
    for have, want in CONVERTIBLE.items():
        if want == clip_type:
            for target in targets_for(have):
                if target in offered:
                    return target, int(have)
    return None


def advertised_targets(types: list[int]) -> dict[str, tuple[int, int]]:
    """Targets to offer guest apps for a client GRAB: {target: (type to ask, type wanted)}."""
    out: dict[str, tuple[int, int]] = {}
    for clip_type in types:
        for target in targets_for(clip_type):
            out.setdefault(target, (clip_type, clip_type))
    for have, want in CONVERTIBLE.items():
        if have in types and want not in types:
            for target in targets_for(want):
                out.setdefault(target, (int(have), int(want)))
    return out


def to_guest_text(data: bytes, client_crlf: bool) -> bytes:
    """Client text -> guest (LF): drop a trailing NUL; CRLF -> LF when the client uses CRLF."""
    if data.endswith(b"\0"):
        data = data[:-1]
    return data.replace(b"\r\n", b"\n") if client_crlf else data


def to_client_text(data: bytes, client_crlf: bool) -> bytes:
    """Guest text (LF) -> client: LF -> CRLF when the client announced CRLF line ends."""
    if not client_crlf:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

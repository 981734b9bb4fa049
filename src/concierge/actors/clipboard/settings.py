"""Settings of the ``clipboard`` actor (``[actors.clipboard.settings]``). msgspec only."""

from __future__ import annotations

import msgspec


class ClipboardSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Backend choice and limits."""

    #: "auto" (wayland data-control when WAYLAND_DISPLAY, else x11), "x11", "wayland", "none"
    backend: str = "auto"
    #: X display to use; empty = $DISPLAY
    x11_display: str = ""
    #: Wayland socket name or path; empty = $WAYLAND_DISPLAY
    wayland_display: str = ""
    #: guest->client limit until the client sends MAX_CLIPBOARD (-1 = unlimited)
    max_clipboard: int = 100 * 1024 * 1024
    #: size of each blob frame of a large CLIPBOARD message (keeps lanes responsive)
    blob_chunk: int = 256 * 1024
    #: how long a guest app's paste waits for the client's data
    request_timeout_s: float = 10.0

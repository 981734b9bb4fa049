"""Modules python-xlib imports when a display is opened (the unix socket connection, the
Xauthority reader and one module per extension of the server; NV-CONTROL, NVIDIA's driver
only, is left out). The X11 back-ends list them
in their node's ``preload`` so the fork server imports them before forking: an import after
the fork costs the session process more memory than the modules themselves."""

from __future__ import annotations

XLIB_AT_CONNECT: tuple[str, ...] = (
    "Xlib.support.unix_connect",
    "Xlib.xauth",
    *(
        f"Xlib.ext.{name}"
        for name in (
            "ge", "xtest", "shape", "xinerama", "record", "composite", "randr", "xfixes",
            "security", "xinput", "damage", "dpms", "res", "screensaver",
        )
    ),
)  # fmt: skip

"""A GTK 3 application that copies text to the CLIPBOARD selection and keeps serving it.

Run with the system Python (python3-gi, gir1.2-gtk-3.0): ``python3 gtk_clipboard_owner.py``
with ``DISPLAY`` set and the text on stdin; prints ``ready`` once it owns the selection.
GTK answers large pastes with INCR, as real desktop applications do.
"""

from __future__ import annotations

import sys

import gi

gi.require_version("Gtk", "3.0")
from gi.repository import Gdk, GLib, Gtk  # noqa: E402


def main() -> None:
    """Own the clipboard until killed."""
    text = sys.stdin.buffer.read().decode("utf-8")
    clipboard = Gtk.Clipboard.get(Gdk.SELECTION_CLIPBOARD)

    def take() -> bool:
        clipboard.set_text(text, len(text.encode("utf-8")))
        clipboard.store()
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        return False

    GLib.idle_add(take)
    Gtk.main()


if __name__ == "__main__":
    main()

"""Optional libraries: which package provides each, and the error an actor exits with when one
is absent (69, "unavailable": retried on parole and shown WAITING with this reason, never a
crash loop). Standard library only."""

from __future__ import annotations

from concierge.errors import UnavailableError

#: top-level module -> how to install it (Debian package, then PyPI distribution)
OPTIONAL_MODULES: dict[str, str] = {
    "Xlib": "python3-xlib (pip: python-xlib)",
    "evdev": "python3-evdev (pip: evdev)",
    "PIL": "python3-pil (pip: pillow)",
}


def missing_dependency(err: BaseException) -> UnavailableError | None:
    """An UnavailableError naming the package to install when ``err`` is the import of an
    optional library failing; None for anything else (a bug stays a crash)."""
    if not isinstance(err, ImportError):
        return None
    root = (err.name or "").split(".")[0]
    if root not in OPTIONAL_MODULES:
        return None
    return UnavailableError(f"{root} is not installed: install {OPTIONAL_MODULES[root]}")

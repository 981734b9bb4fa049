"""GNOME settings access through the ``gsettings`` and ``dconf`` command-line tools.

Values are GVariant text (``'none'``, ``false``) and are passed through unchanged, so a
restore writes back exactly what was read. ``dconf read`` tells a user-set key from a default
one, so a key that was at its default is *reset* rather than pinned. Must not import the node.
"""

from __future__ import annotations

import os
import shutil
import subprocess

#: effect -> (schema, key, value that tones it down)
EFFECT_KEYS: dict[str, tuple[str, str, str]] = {
    "wallpaper": ("org.gnome.desktop.background", "picture-options", "'none'"),
    "font_smoothing": ("org.gnome.desktop.interface", "font-antialiasing", "'none'"),
    "animation": ("org.gnome.desktop.interface", "enable-animations", "false"),
}


class SettingsError(RuntimeError):
    """A settings command failed or the value did not stick (no session bus, locked key)."""


class GSettings:
    """Reads, writes and resets GNOME keys; every call is a short blocking subprocess."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.gsettings = shutil.which("gsettings") or "gsettings"
        self.dconf = shutil.which("dconf")
        self.timeout_s = timeout_s

    def available(self) -> bool:
        """True when gsettings exists and the GNOME desktop schemas are installed."""
        try:
            out = self._run(self.gsettings, "list-schemas")
        except SettingsError:
            return False
        return "org.gnome.desktop.interface" in out.split()

    def _run(self, *argv: str) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SettingsError(f"{argv[1]} failed: {err}") from err
        if done.returncode != 0:
            raise SettingsError(f"{argv[1]} failed: {done.stderr.strip()[:200]}")
        return done.stdout.strip()

    def get(self, schema: str, key: str) -> str:
        """The current value (GVariant text)."""
        return self._run(self.gsettings, "get", schema, key)

    def user_value(self, schema: str, key: str) -> str | None:
        """The user's own value, or None when the key is at its default (needs dconf)."""
        if self.dconf is None or os.environ.get("GSETTINGS_BACKEND", "dconf") != "dconf":
            return self.get(schema, key)  # cannot tell user values from defaults: pin the value
        path = "/" + schema.replace(".", "/") + "/" + key
        value = self._run(self.dconf, "read", path)
        return value or None

    def set(self, schema: str, key: str, value: str) -> None:
        """Write and verify (gsettings exits 0 even when nothing was written)."""
        self._run(self.gsettings, "set", schema, key, value)
        if _norm(self.get(schema, key)) != _norm(value):
            raise SettingsError(f"{schema} {key} did not change (no session bus or locked key)")

    def reset(self, schema: str, key: str) -> None:
        """Back to the default (removes the user's value)."""
        self._run(self.gsettings, "reset", schema, key)


def _norm(value: str) -> str:
    return value.strip().strip("'\"")

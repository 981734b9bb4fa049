"""EffectsNode: applies DISPLAY_CONFIG to GNOME settings and always restores them.

Before changing a key the old user value is written to a journal file, so even a killed
agent restores the user's settings at its next start. Settings commands run in the
ServiceNode actor thread. Must not import X11, Wayland or other actors' code.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import msgspec

from concierge.actors.effects.gsettings import EFFECT_KEYS, GSettings, SettingsError
from concierge.actors.effects.settings import EffectsSettings
from concierge.actors.vdagent import (
    DISABLE_ANIMATION,
    DISABLE_FONT_SMOOTH,
    DISABLE_WALLPAPER,
    SET_COLOR_DEPTH,
)
from concierge.errors import ConfigError
from concierge.runtime.node import Incoming
from concierge.runtime.service import ServiceNode, handler

log = logging.getLogger(__name__)
FLAG_EFFECT = {
    DISABLE_WALLPAPER: "wallpaper",
    DISABLE_FONT_SMOOTH: "font_smoothing",
    DISABLE_ANIMATION: "animation",
}


def journal_path(configured: str) -> Path:
    """The restore journal (survives crashes; settings persist across logins too)."""
    if configured:
        return Path(configured)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.environ.get("HOME") or os.path.expanduser("~"), ".local", "state"
    )
    return Path(state) / "concierge" / "effects-restore.json"


class EffectsNode(ServiceNode):
    """Display effects for one graphical session."""

    def on_start(self) -> None:
        """Check the settings backend; restore what a previous run left behind."""
        try:
            self.settings = msgspec.convert(dict(self.ctx.settings), EffectsSettings)
        except msgspec.ValidationError as err:
            raise ConfigError(str(err), key=f"actors.{self.ctx.actor_id}.settings") from err
        self.journal = journal_path(self.settings.journal)
        self.gs = GSettings(self.settings.command_timeout_s)
        self.supported = self.gs.available()
        self.saved: list[tuple[str, str, str | None]] = []
        if not self.supported:
            log.warning(
                "no GNOME settings (gsettings + schemas): display effects unsupported",
                extra={"event": "effects.unsupported"},
            )
            self.ctx.set_health("degraded", "display effects unsupported")
        if self._actor is not None and self.journal.exists():
            self._actor.tell(Incoming(kind="cast", type="effects.recover", body=None, src="self"))

    def on_stop(self) -> None:
        """Restore before exiting (the journal covers the case where this cannot run)."""
        self._restore()

    @handler("effects.recover")
    def on_recover(self, msg: Incoming) -> None:
        """Restore from the journal of a run that did not exit cleanly."""
        del msg
        try:
            entries = json.loads(self.journal.read_text(encoding="utf-8"))
            self.saved = [(str(s), str(k), None if v is None else str(v)) for s, k, v in entries]
        except (OSError, ValueError, TypeError) as err:
            log.warning("unreadable effects journal: %s", err, extra={"event": "effects.journal"})
            return
        log.info("restoring settings left by a previous run", extra={"event": "effects.recover"})
        self._restore()

    @handler("effects.state")
    def on_state(self, msg: Incoming) -> dict[str, Any]:
        """What is currently toned down and the values that will be restored."""
        del msg
        return {"active": bool(self.saved), "saved": {f"{s} {k}": v for s, k, v in self.saved}}

    @handler("spice.display_config")
    def on_display_config(self, msg: Incoming) -> dict[str, Any]:
        """Restore the previous effects, then apply the new flags."""
        body = msg.body if isinstance(msg.body, dict) else {}
        flags = body.get("flags", 0)
        flags = flags if isinstance(flags, int) else 0
        self._restore()
        applied: list[str] = []
        unsupported: list[str] = []
        if flags & SET_COLOR_DEPTH:
            unsupported.append("color_depth")  # X11/Wayland sessions cannot change it live
        for flag, effect in FLAG_EFFECT.items():
            if not flags & flag:
                continue
            if not self.supported:
                unsupported.append(effect)
                continue
            schema, key, value = EFFECT_KEYS[effect]
            try:
                old = self.gs.user_value(schema, key)
                self.saved.append((schema, key, old))
                self._write_journal()
                self.gs.set(schema, key, value)
                applied.append(effect)
            except SettingsError as err:
                log.warning("effect %s not applied: %s", effect, err, extra={"event": "effects.fail"})
                unsupported.append(effect)
        log.info("display effects applied: %s", applied, extra={"event": "effects.applied"})
        return {"applied": applied, "unsupported": unsupported}

    @handler("spice.client_disconnected")
    def on_disconnect(self, msg: Incoming) -> None:
        """The client went: give the user their desktop back."""
        del msg
        self._restore()

    @handler("session.deactivated")
    def on_deactivated(self, msg: Incoming) -> None:
        """Another session took the display: restore this one."""
        del msg
        self._restore()

    def _write_journal(self) -> None:
        self.journal.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.journal.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.saved), encoding="utf-8")
        os.replace(tmp, self.journal)

    def _restore(self) -> None:
        failed: list[tuple[str, str, str | None]] = []
        for schema, key, old in reversed(self.saved):
            try:
                if old is None:
                    self.gs.reset(schema, key)
                else:
                    self.gs.set(schema, key, old)
            except SettingsError as err:
                log.warning("restore of %s failed: %s", key, err, extra={"event": "effects.restore"})
                failed.append((schema, key, old))
        self.saved = failed
        if failed:
            self._write_journal()  # try again at the next start
        else:
            self.journal.unlink(missing_ok=True)

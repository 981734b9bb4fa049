"""Settings of the ``effects`` actor (``[actors.effects.settings]``). msgspec only."""

from __future__ import annotations

import msgspec


class EffectsSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where the restore journal lives and how long a settings command may take."""

    #: restore journal; empty = $XDG_STATE_HOME/concierge/effects-restore.json
    journal: str = ""
    #: per gsettings/dconf command
    command_timeout_s: float = 5.0

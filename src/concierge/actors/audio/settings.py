"""Settings of the ``audio`` actor (``[actors.audio.settings]``). msgspec only."""

from __future__ import annotations

import msgspec


class AudioSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How volume sync reaches the sound server."""

    #: sink for playback volume
    sink: str = "@DEFAULT_SINK@"
    #: source for record volume
    source: str = "@DEFAULT_SOURCE@"
    #: per ``pactl`` command
    command_timeout_s: float = 5.0

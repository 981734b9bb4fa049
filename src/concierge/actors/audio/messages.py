"""Public message API of the ``audio`` actor (runs as the user in the graphical session).

Casts (or requests, answered with ``{"applied": bool}``) from the session gateway:

- ``spice.audio_volume_sync`` :class:`VolumeSync`: the client's playback (``is_playback`` 1)
  or record volume, sent once per connection by spice-gtk. ``volume`` has ``nchannels``
  entries, 0..65535 (65535 = 100 %). Applied to the default sink / source of the session's
  PulseAudio or PipeWire (pipewire-pulse) server through ``pactl``.

Nothing is sent back. The gateway should announce VD_AGENT_CAP_AUDIO_VOLUME_SYNC only when
this actor runs. Standard library only.
"""

from __future__ import annotations

from typing import TypedDict


class VolumeSync(TypedDict, total=False):
    """``VDAgentAudioVolumeSync``."""

    is_playback: int
    mute: int
    nchannels: int
    volume: list[int]

"""AudioNode: applies SPICE AUDIO_VOLUME_SYNC with ``pactl`` (PulseAudio or pipewire-pulse).

The stock agent sets the ALSA "default" card's Master/Capture, which does nothing on the
PulseAudio/PipeWire desktops people run today; ``pactl`` reaches both. ``nchannels`` is
checked against the data (the stock agent trusts it). Commands run in the ServiceNode actor
thread. Must not import X11, Wayland or other actors' code.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from typing import Any

import msgspec

from concierge.actors.audio.settings import AudioSettings
from concierge.errors import ActorError, ConfigError, ErrorCode
from concierge.runtime.node import Incoming
from concierge.runtime.service import ServiceNode, handler

log = logging.getLogger(__name__)
MAX_CHANNELS = 32
PA_VOLUME_NORM = 0x10000  # PulseAudio's 100 %


def to_pulse(volume: int) -> int:
    """SPICE 0..65535 -> PulseAudio raw volume (65535 -> 100 %)."""
    return round(max(0, min(volume, 0xFFFF)) * PA_VOLUME_NORM / 0xFFFF)


class AudioNode(ServiceNode):
    """Client volume -> the session's default sink/source."""

    def on_start(self) -> None:
        """Validate settings; find pactl (no pactl: volume sync unsupported, logged)."""
        try:
            self.settings = msgspec.convert(dict(self.ctx.settings), AudioSettings)
        except msgspec.ValidationError as err:
            raise ConfigError(str(err), key=f"actors.{self.ctx.actor_id}.settings") from err
        self.pactl = shutil.which("pactl")
        if self.pactl is None:
            log.warning("pactl not found: volume sync unsupported", extra={"event": "audio.unsupported"})
            self.ctx.set_health("degraded", "volume sync unsupported (no pactl)")

    @handler("spice.audio_volume_sync")
    def on_volume(self, msg: Incoming) -> dict[str, Any]:
        """Set volume (per channel when the device has that many) and mute."""
        body = msg.body if isinstance(msg.body, dict) else {}
        volume = body.get("volume")
        count = body.get("nchannels")
        if (
            not isinstance(volume, list)
            or not isinstance(count, int)
            or count != len(volume)
            or not 0 < count <= MAX_CHANNELS
            or not all(isinstance(v, int) for v in volume)
        ):
            raise ActorError(ErrorCode.BAD_REQUEST, "nchannels does not match the volume array")
        if self.pactl is None:
            return {"applied": False}
        playback = bool(body.get("is_playback"))
        kind, target = ("sink", self.settings.sink) if playback else ("source", self.settings.source)
        values = [str(to_pulse(v)) for v in volume]
        try:
            if not self._pactl(f"set-{kind}-volume", target, *values) and len(values) > 1:
                # the device has another channel map: fall back to one value for all channels
                self._pactl(f"set-{kind}-volume", target, str(to_pulse(max(volume))), check=True)
            self._pactl(f"set-{kind}-mute", target, "1" if body.get("mute") else "0", check=True)
        except (OSError, subprocess.SubprocessError) as err:
            log.warning("volume sync failed: %s", err, extra={"event": "audio.failed"})
            return {"applied": False}
        log.info("volume synced", extra={"event": "audio.synced", "playback": playback})
        return {"applied": True}

    def _pactl(self, *args: str, check: bool = False) -> bool:
        done = subprocess.run(
            [self.pactl or "pactl", *args],
            capture_output=True,
            text=True,
            timeout=self.settings.command_timeout_s,
            check=False,
        )
        if check and done.returncode != 0:
            raise subprocess.SubprocessError(done.stderr.strip()[:200] or f"pactl {args[0]} failed")
        return done.returncode == 0

"""Audio actor: SPICE AUDIO_VOLUME_SYNC applied to the session's sound server."""

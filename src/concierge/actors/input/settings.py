"""Settings of the input actor (``[actors.input.settings]``). msgspec only."""

from __future__ import annotations

import msgspec


class InputSettings(msgspec.Struct, forbid_unknown_fields=True):
    """``sink``: ``"uinput"`` (``/dev/uinput``) or ``"file:PATH"`` (raw 24-byte input_event
    records to a file or FIFO, like ``spice-vdagentd -f``; CLI ``--input-sink file:PATH``)."""

    sink: str = "uinput"
    device_name: str = "spice vdagent tablet"
    uinput_path: str = "/dev/uinput"
    #: a slow sink reader may leave at most this many mouse states waiting (moves coalesce)
    max_pending: int = 4096
    #: only this actor may set the geometry (the session gateway); "" accepts any sender
    geometry_from: str = "session"
    #: lend the open sink to this actor's SPICE front-end so it writes reports itself (one
    #: process wake-up per mouse state instead of two); "" keeps every write here
    lend_to: str = "transport"

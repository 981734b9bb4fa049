"""Settings of the ``filexfer`` actor (``[actors.filexfer.settings]``). msgspec only."""

from __future__ import annotations

import msgspec


class FileXferSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Limits and destination of client->guest file transfers."""

    #: False refuses every transfer with DISABLED
    enabled: bool = True
    #: destination; empty = the XDG download directory ($HOME/Downloads when unset)
    directory: str = ""
    #: largest single file accepted (bytes)
    max_file_size: int = 4 * 1024**3
    #: concurrent transfers (the stock daemon allows 128)
    max_transfers: int = 128
    #: bytes of all unfinished transfers together
    max_total_bytes: int = 8 * 1024**3
    #: free space that must remain on the filesystem after the file is written
    reserve_bytes: int = 64 * 1024**2
    #: numbered alternatives tried when a name exists: "a (1).txt" ... "a (N).txt"
    max_name_tries: int = 63

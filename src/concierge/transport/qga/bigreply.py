"""Large replies (guest-file-read, guest-exec-status output) encoded piece by piece.

A 48 MiB guest-file-read answers with 64 MiB of base64. Building that line in one go costs
several whole copies (quoting, concatenation, ASCII encoding) and the host stream would hold
all of it; here the line is produced in pieces of :data:`PIECE` characters that the host
stream pulls only while the host keeps reading (see ``transport/host/stream.py``). The bytes
are exactly those of :func:`~concierge.transport.qga.replies.return_line`. Standard library only.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from concierge.transport.qga.replies import return_frame
from concierge.transport.qga.wire import encode, qdict_order, quote

#: string members of a reply above this many characters in total make it a streamed reply
STREAM_THRESHOLD = 1 << 20
#: characters per piece of a long string
PIECE = 256 << 10


def is_large(value: Any) -> bool:
    """True for a reply object whose string members are long enough to stream."""
    if type(value) is not dict:
        return False
    return sum(len(v) for v in value.values() if type(v) is str) > STREAM_THRESHOLD


def _string_pieces(text: str) -> Generator[str, None, None]:
    yield '"'
    for start in range(0, len(text), PIECE):
        piece = text[start : start + PIECE]
        if piece.isascii() and piece.isprintable() and '"' not in piece and "\\" not in piece:
            yield piece  # base64: nothing to escape
        else:
            yield quote(piece)[1:-1]  # escaping is per character, so pieces escape alone
    yield '"'


def reply_pieces(value: dict[str, Any], req_id: Any, has_id: bool) -> Generator[bytes, None, None]:
    """``return_line(value, req_id, has_id)`` as a sequence of ASCII pieces."""
    head, tail = return_frame(req_id, has_id)
    yield (head + "{").encode("ascii")
    for i, key in enumerate(qdict_order(value)):
        member = value[key]
        prefix = (", " if i else "") + quote(key) + ": "
        if type(member) is str and len(member) > PIECE:
            yield prefix.encode("ascii")
            for piece in _string_pieces(member):
                yield piece.encode("ascii")
        else:
            yield (prefix + encode(member)).encode("ascii")
    yield ("}" + tail).encode("ascii")

"""Base64 exactly as qemu-ga accepts it on the wire (``qbase64_decode`` + glib's decoder).

qemu-ga rejects any character outside the base64 alphabet and ``=`` with "Base64 data contains
invalid characters", then decodes leniently: an incomplete final quantum is dropped and ``=``
may appear anywhere (it counts as a zero sextet and shortens its quantum). Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import re

from concierge.errors import ActorError, ErrorCode

_VALID = re.compile(r"[A-Za-z0-9+/=]*\Z")
_STRICT = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_RANK = {c: i for i, c in enumerate(_ALPHABET)}


def decode(text: str) -> bytes:
    """Decode ``text`` like qemu-ga, or raise BAD_REQUEST with qemu-ga's message."""
    if "\0" in text:
        raise ActorError(ErrorCode.BAD_REQUEST, "Data contains embedded NUL characters")
    if not _VALID.match(text):
        raise ActorError(ErrorCode.BAD_REQUEST, "Base64 data contains invalid characters")
    if _STRICT.match(text):  # the common, well-formed case: C speed
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error:
            pass
    return _lenient(text)


def _lenient(text: str) -> bytes:
    """glib's g_base64_decode for the odd inputs (missing or misplaced padding)."""
    out = bytearray()
    value = 0
    count = 0
    last = ["", ""]
    for char in text:
        last[1], last[0] = last[0], char
        value = ((value << 6) | _RANK.get(char, 0)) & 0xFFFFFF
        count += 1
        if count == 4:
            out.append(value >> 16)
            if last[1] != "=":
                out.append((value >> 8) & 0xFF)
            if last[0] != "=":
                out.append(value & 0xFF)
            count = 0
    return bytes(out)


def encode(data: bytes) -> str:
    """Standard padded base64 (what qemu-ga sends)."""
    return base64.b64encode(data).decode("ascii")

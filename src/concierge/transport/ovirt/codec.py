"""oVirt guest agent wire codec: newline-delimited JSON objects carrying ``__name__``.

Encoding follows the old agent and what vdsm's reader expects: XML-illegal code points become
U+FFFD in every string (keys and values), output is ASCII-escaped JSON plus ``\\n``. Decoding is
strict UTF-8 with a line cap (1 MiB, vdsm's own limit); garbage is reported and the reader
resynchronises at the next newline. Standard library only; no I/O, no actor imports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: vdsm's MAX_MESSAGE_SIZE; a line (without the newline) may not reach it
MAX_LINE = 1024 * 1024
#: deepest nesting of a host message we accept (vdsm's messages are flat: 2 levels at most);
#: deeper values would reach Python's recursion limit in the decoder, ``scrub`` or ``encode``
MAX_DEPTH = 32


class TooDeepError(ValueError):
    """A value nests deeper than :data:`MAX_DEPTH`."""


# C0 controls except TAB/LF/CR, DEL..0x84, 0x86..0x9F, surrogates, U+FFFE/U+FFFF (XML 1.1).
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")


def scrub(value: Any, depth: int = 0) -> Any:
    """Return ``value`` with every XML-illegal code point in every string replaced by U+FFFD.

    Raises:
        TooDeepError: ``value`` nests deeper than :data:`MAX_DEPTH`.
    """
    if isinstance(value, str):
        return _ILLEGAL.sub("\ufffd", value)
    if depth >= MAX_DEPTH and isinstance(value, dict | list | tuple):
        raise TooDeepError(f"value nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {scrub(str(k)): scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, depth + 1) for v in value]
    if isinstance(value, bytes):
        return scrub(value.decode("utf-8", "replace"))
    return value


def encode(name: str, args: dict[str, Any] | None = None) -> bytes:
    """Render one guest->host line: ASCII JSON object with ``__name__``, newline-terminated.

    Raises:
        ValueError: the line would exceed :data:`MAX_LINE` (vdsm would discard it).
    """
    body: dict[str, Any] = scrub(dict(args or {}))
    body["__name__"] = scrub(name)
    line = json.dumps(body, ensure_ascii=True, separators=(", ", ": ")).encode("ascii") + b"\n"
    if len(line) > MAX_LINE:
        raise ValueError(f"{name} line of {len(line)} bytes exceeds the 1 MiB limit")
    return line


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded host->guest message (``args`` without ``__name__``)."""

    name: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Garbage:
    """A line that could not be decoded; ``reason`` is safe to log (never the raw bytes)."""

    reason: str
    size: int


def decode_line(line: bytes) -> Message | Garbage:
    """Decode one line (without its newline). Never raises."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return Garbage("invalid UTF-8", len(line))
    try:
        obj = json.loads(text)
    except RecursionError:  # C decoder's own guard, some hundred levels down
        return Garbage("JSON nested too deeply", len(line))
    except ValueError:  # also integers of more than 4,300 digits
        return Garbage("invalid JSON", len(line))
    if not isinstance(obj, dict):
        return Garbage("JSON value is not an object", len(line))
    name = obj.pop("__name__", None)
    if not isinstance(name, str) or not name:
        return Garbage("object without a __name__ string", len(line))
    try:
        args = scrub(obj)
    except TooDeepError:
        return Garbage("JSON nested too deeply", len(line))
    return Message(scrub(name), args)


class LineReader:
    """Splits a byte stream into lines, capping the buffered tail at :data:`MAX_LINE`.

    An over-long line is dropped up to its newline (reported once as :class:`Garbage`), so one
    bad sender never costs more than its own line.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._skipping = False
        self._skipped = 0

    def reset(self) -> None:
        """Forget any partial line (the host went away)."""
        self._buf.clear()
        self._skipping = False
        self._skipped = 0

    def feed(self, data: bytes) -> Iterator[Message | Garbage]:
        """Consume ``data``; yield each complete line's decoding in order."""
        start = 0
        while start < len(data):
            nl = data.find(b"\n", start)
            chunk = data[start:] if nl < 0 else data[start:nl]
            start = len(data) if nl < 0 else nl + 1
            if self._skipping:
                self._skipped += len(chunk)
                if nl >= 0:
                    yield Garbage("line longer than 1 MiB dropped", self._skipped)
                    self._skipping = False
                    self._skipped = 0
                continue
            self._buf += chunk
            if len(self._buf) >= self.max_line:
                self._skipping = nl < 0
                self._skipped = len(self._buf)
                self._buf.clear()
                if nl >= 0:
                    yield Garbage("line longer than 1 MiB dropped", self._skipped)
                    self._skipped = 0
                continue
            if nl >= 0:
                line = bytes(self._buf)
                self._buf.clear()
                if line.strip():
                    yield decode_line(line)

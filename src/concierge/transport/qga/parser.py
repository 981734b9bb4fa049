"""Turns one message's tokens into a Python value exactly as QEMU's json-parser does.

Values: dict, list, str, int (int64 or uint64 range), float, bool, None. Errors carry qemu-ga's
``desc`` text ("JSON parse error, ..."). The parser is iterative (nesting up to 1024 levels
never touches Python's recursion limit). Standard library only.
"""

from __future__ import annotations

from typing import Any

LCURLY, RCURLY, LSQUARE, RSQUARE, COLON, COMMA, INTEGER, FLOAT, KEYWORD, STRING, ERROR = range(11)

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
#: longest integer token that can fit 64 bits ("-9223372036854775808", "18446744073709551615");
#: anything longer is a double for QEMU, and must never reach ``int()``, which refuses more
#: than 4,300 digits with a ValueError (a host could drop its own connection with it)
MAX_INT_TOKEN = 20
_ESCAPES = {
    0x22: '"',
    0x27: "'",
    0x5C: "\\",
    0x2F: "/",
    0x62: "\b",
    0x66: "\f",
    0x6E: "\n",
    0x72: "\r",
    0x74: "\t",
}
_HEX = frozenset(b"0123456789abcdefABCDEF")
_MIN_CP = (0x80, 0x800, 0x10000, 0x200000, 0x4000000)


class ParseFailedError(Exception):
    """The message could not be parsed; ``desc`` is qemu-ga's error text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.desc = "JSON parse error, " + message

    @staticmethod
    def stray(text: bytes) -> str:
        """The error text for a lexical error token (NUL ends it, as in C)."""
        return "JSON parse error, stray '" + decode_lossy(text.split(b"\0", 1)[0]) + "'"


def valid_codepoint(cp: int) -> bool:
    """QEMU's is_valid_codepoint: no surrogates, no noncharacters, at most U+10FFFF."""
    if cp < 0 or cp > 0x10FFFF:
        return False
    if 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE:
        return False
    return not 0xD800 <= cp <= 0xDFFF


def mod_utf8_codepoint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode one modified-UTF-8 character at ``pos``: (codepoint or -1, next position)."""
    byte = data[pos]
    pos += 1
    if byte < 0x80:
        return byte, pos
    if byte >= 0xFE or not byte & 0x40:
        return -1, pos
    length = 0
    mask = 0x80
    while byte & mask:
        length += 1
        mask >>= 1
    cp = byte & (mask - 1)
    for _ in range(1, length):
        nxt = data[pos] if pos < len(data) else 0
        if nxt & 0xC0 != 0x80:
            return -1, pos
        pos += 1
        cp = (cp << 6) | (nxt & 0x3F)
    if not valid_codepoint(cp):
        return -1, pos
    if cp < _MIN_CP[length - 2] and not (cp == 0 and length == 2):
        return -1, pos
    return cp, pos


def decode_lossy(data: bytes) -> str:
    """Decode raw bytes as QEMU's JSON writer does: every bad sequence becomes U+FFFD."""
    if data.isascii():
        return data.decode("ascii")
    out = []
    pos = 0
    while pos < len(data):
        cp, pos = mod_utf8_codepoint(data, pos)
        out.append(chr(cp) if cp >= 0 else "\ufffd")
    return "".join(out)


def _hex4(text: bytes, pos: int) -> int:
    chunk = text[pos : pos + 4]
    if len(chunk) < 4 or not all(c in _HEX for c in chunk):
        return -1
    return int(chunk, 16)


def parse_string(text: bytes) -> str:
    """Decode a string token (quotes included), rejecting what QEMU rejects."""
    body = text[1:-1]
    if body.isascii() and b"\\" not in body:
        return body.decode("ascii")
    out: list[str] = []
    pos = 1
    end = len(text) - 1
    while pos < end:
        byte = text[pos]
        if byte == 0x5C:
            begin = pos
            esc = text[pos + 1]
            pos += 2
            simple = _ESCAPES.get(esc)
            if simple is not None:
                out.append(simple)
                continue
            if esc != 0x75:
                raise ParseFailedError("invalid escape sequence in string")
            cp = _hex4(text, pos)
            pos += 4
            if 0xD800 <= cp <= 0xDBFF and text[pos : pos + 2] == b"\\u":
                cp = 0x10000 + ((cp & 0x3FF) << 10)
                trailing = _hex4(text, pos + 2)
                if 0xDC00 <= trailing <= 0xDFFF:
                    cp |= trailing & 0x3FF
                    pos += 6
                else:
                    cp = -1
            if not valid_codepoint(cp):
                shown = decode_lossy(text[begin:pos].split(b"\0", 1)[0])
                raise ParseFailedError(f"{shown} is not a valid Unicode character")
            out.append(chr(cp))
            continue
        if byte < 0x80:
            out.append(chr(byte))
            pos += 1
            continue
        cp, pos = mod_utf8_codepoint(text, pos)
        if cp < 0:
            raise ParseFailedError("invalid UTF-8 sequence in string")
        out.append(chr(cp))
    return "".join(out)


def _literal(kind: int, text: bytes) -> Any:
    if kind == STRING:
        return parse_string(text)
    if kind == INTEGER:
        if len(text) > MAX_INT_TOKEN:
            return float(text)  # out of 64-bit range whatever the digits: QEMU's strtod
        value = int(text)
        if INT64_MIN <= value <= INT64_MAX or (value > 0 and value <= UINT64_MAX):
            return value
        return float(text)
    if kind == FLOAT:
        return float(text)
    if text == b"true":
        return True
    if text == b"false":
        return False
    if text == b"null":
        return None
    raise ParseFailedError(f"invalid keyword '{text.decode('ascii', 'replace')}'")


_VALUE_START = frozenset((STRING, INTEGER, FLOAT, KEYWORD))


def parse_tokens(tokens: list[tuple[int, bytes]]) -> Any:
    """Parse one balanced token list; raise :class:`ParseFailedError` with QEMU's first error."""
    pos = 0
    n = len(tokens)
    # frames: [0, dict] expects a key, [1, dict, key] expects a value, [2, list] an element
    stack: list[list[Any]] = []
    while True:
        # ---- parse one value starting at tokens[pos]
        if pos >= n:
            raise ParseFailedError("premature EOI")
        kind, text = tokens[pos]
        pos += 1
        value: Any
        if kind in _VALUE_START:
            value = _literal(kind, text)
        elif kind == LCURLY:
            if pos >= n:
                raise ParseFailedError("premature EOI")
            if tokens[pos][0] == RCURLY:
                pos += 1
                value = {}
            else:
                stack.append([0, {}])
                continue
        elif kind == LSQUARE:
            if pos >= n:
                raise ParseFailedError("premature EOI")
            if tokens[pos][0] == RSQUARE:
                pos += 1
                value = []
            else:
                stack.append([2, []])
                continue
        else:
            raise ParseFailedError("expecting value")
        # ---- a value is complete: hand it to the enclosing container(s)
        while True:
            if not stack:
                return value
            frame = stack[-1]
            if frame[0] == 0:
                if not isinstance(value, str):
                    raise ParseFailedError("key is not a string in object")
                if pos >= n:
                    raise ParseFailedError("premature EOI")
                if tokens[pos][0] != COLON:
                    raise ParseFailedError("missing : in object pair")
                pos += 1
                frame[0] = 1
                frame.append(value)
                break
            if frame[0] == 1:
                container: dict[str, Any] = frame[1]
                key = frame.pop()
                if key in container:
                    raise ParseFailedError("duplicate key")
                container[key] = value
                if pos >= n:
                    raise ParseFailedError("premature EOI")
                sep = tokens[pos][0]
                pos += 1
                if sep == RCURLY:
                    stack.pop()
                    value = container
                    continue
                if sep != COMMA:
                    raise ParseFailedError("expected separator in dict")
                if pos >= n:
                    raise ParseFailedError("premature EOI")
                frame[0] = 0
                break
            items: list[Any] = frame[1]
            items.append(value)
            if pos >= n:
                raise ParseFailedError("premature EOI")
            sep = tokens[pos][0]
            pos += 1
            if sep == RSQUARE:
                stack.pop()
                value = items
                continue
            if sep != COMMA:
                raise ParseFailedError("expected separator in list")
            break

"""A streaming JSON reader with qemu-ga's exact behaviour (QEMU's json-lexer/json-streamer).

Bytes go in, whole messages come out: a parsed value or the text of a parse error, in the order
qemu-ga produces them (lexical errors are reported at once and the lexer skips to the next
structural character; the 0xFF byte therefore resets a half-read request). Token size, token
count and nesting are bounded, so memory stays bounded whatever a host sends. Runs of string
characters, digits and letters are consumed with regular expressions, not byte by byte, so an
8 MiB string costs milliseconds. Standard library only; must not import the front-end.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from concierge.transport.qga.parser import (
    COLON,
    COMMA,
    ERROR,
    FLOAT,
    INTEGER,
    KEYWORD,
    LCURLY,
    LSQUARE,
    RCURLY,
    RSQUARE,
    STRING,
    ParseFailedError,
    parse_tokens,
)

MAX_TOKEN_SIZE = 64 << 20
MAX_TOKEN_COUNT = 2 << 20
MAX_NESTING = 1 << 10

# lexer states
_START, _RECOVERY, _DQ, _DQ_ESC, _SQ, _SQ_ESC = range(6)
_ZERO, _DIGITS, _SIGN, _MANT, _MANT_DIGITS, _EXP_E, _EXP_SIGN, _EXP_DIGITS, _KEYWORD = range(6, 15)

_STRUCT = {0x7B: LCURLY, 0x7D: RCURLY, 0x5B: LSQUARE, 0x5D: RSQUARE, 0x3A: COLON, 0x2C: COMMA}
_WS = frozenset(b" \t\r\n")
_DQ_RUN = re.compile(rb'[^"\\\x00-\x1f\xfe\xff]+')
_SQ_RUN = re.compile(rb"[^'\\\x00-\x1f\xfe\xff]+")
_DIGIT_RUN = re.compile(rb"[0-9]+")
_ALPHA_RUN = re.compile(rb"[a-z]+")
_RECOVERY_RUN = re.compile(rb"[^\x00-\x08\x0a-\x1f\xfe\xff\[\]{}:,]+")
_WS_RUN = re.compile(rb"[ \t\r\n]+")
# states that end with a lookahead character -> the token type they produce
_LOOKAHEAD_TERMINAL = {
    _ZERO: INTEGER,
    _DIGITS: INTEGER,
    _MANT_DIGITS: FLOAT,
    _EXP_DIGITS: FLOAT,
    _KEYWORD: KEYWORD,
}


def _run_end(pattern: re.Pattern[bytes], data: bytes, start: int) -> int:
    m = pattern.match(data, start)
    return m.end() if m is not None else start + 1


Emit = Callable[[Any, str | None], None]


class JsonStreamer:
    """Feeds bytes, calls ``emit(value, None)`` per message or ``emit(None, error_desc)``."""

    def __init__(
        self,
        emit: Emit,
        *,
        max_token_size: int = MAX_TOKEN_SIZE,
        max_token_count: int = MAX_TOKEN_COUNT,
        max_nesting: int = MAX_NESTING,
    ) -> None:
        self.emit = emit
        self.max_token_size = max_token_size
        self.max_token_count = max_token_count
        self.max_nesting = max_nesting
        self.reset()

    def reset(self) -> None:
        """Forget any partial input (a new host connection starts clean)."""
        self.state = _START
        self.token = bytearray()
        self.tokens: list[tuple[int, bytes]] = []
        self.braces = 0
        self.brackets = 0
        self.token_size = 0

    @property
    def idle(self) -> bool:
        """True when no partial token or message is pending."""
        return self.state == _START and not self.tokens

    # ------------------------------------------------------------------ lexer
    def feed(self, data: bytes) -> None:
        """Lex ``data``; complete messages and errors are emitted as they are recognised."""
        i = 0
        n = len(data)
        token = self.token
        while i < n:
            state = self.state
            ch = data[i]
            if state == _START:
                kind = _STRUCT.get(ch)
                if kind is not None:
                    i += 1
                    self._token(kind, bytes((ch,)))
                    continue
                if ch in _WS:
                    m = _WS_RUN.match(data, i)
                    i = m.end() if m else i + 1
                    continue
                i += 1
                token.append(ch)
                if ch == 0x22:
                    self.state = _DQ
                elif ch == 0x27:
                    self.state = _SQ
                elif ch == 0x30:
                    self.state = _ZERO
                elif 0x31 <= ch <= 0x39:
                    self.state = _DIGITS
                elif ch == 0x2D:
                    self.state = _SIGN
                elif 0x61 <= ch <= 0x7A:
                    self.state = _KEYWORD
                else:
                    self._error()
                continue
            if state in (_DQ, _SQ):
                m = (_DQ_RUN if state == _DQ else _SQ_RUN).match(data, i)
                if m is not None:
                    end = m.end()
                    room = self.max_token_size + 1 - len(token)
                    if end - i >= room:
                        token += data[i : i + room]
                        i += room
                        self._token_too_big()
                        continue
                    token += data[i:end]
                    i = end
                    continue
                i += 1
                token.append(ch)
                if ch == (0x22 if state == _DQ else 0x27):
                    self.state = _START
                    self._take(STRING)
                elif ch == 0x5C:
                    self.state = _DQ_ESC if state == _DQ else _SQ_ESC
                    self._check_size()
                else:
                    self._error()
                continue
            if state in (_DQ_ESC, _SQ_ESC):
                i += 1
                token.append(ch)
                if 0x20 <= ch <= 0xFD:
                    self.state = _DQ if state == _DQ_ESC else _SQ
                    self._check_size()
                else:
                    self._error()
                continue
            if state == _RECOVERY:
                m = _RECOVERY_RUN.match(data, i)
                if m is not None:
                    i = m.end()
                else:
                    self.state = _START  # lookahead: the character is lexed again
                continue
            # numbers and keywords
            if state in (_DIGITS, _MANT_DIGITS, _EXP_DIGITS) and 0x30 <= ch <= 0x39:
                i = self._take_run(_DIGIT_RUN, data, i)
                continue
            if state == _KEYWORD and 0x61 <= ch <= 0x7A:
                i = self._take_run(_ALPHA_RUN, data, i)
                continue
            if state == _ZERO and 0x30 <= ch <= 0x39:
                i += 1
                token.append(ch)
                self._error()
                continue
            nxt = self._number_step(state, ch)
            if nxt is not None:
                i += 1
                token.append(ch)
                self.state = nxt
                self._check_size()
                continue
            terminal = _LOOKAHEAD_TERMINAL.get(state)
            if terminal is not None:
                self.state = _START  # lookahead: do not consume ``ch``
                self._take(terminal)
                continue
            i += 1
            token.append(ch)
            self._error()

    @staticmethod
    def _number_step(state: int, ch: int) -> int | None:
        digit = 0x30 <= ch <= 0x39
        if state == _ZERO:
            return _MANT if ch == 0x2E else None
        if state == _DIGITS:
            if ch in (0x65, 0x45):
                return _EXP_E
            return _MANT if ch == 0x2E else None
        if state == _SIGN:
            if ch == 0x30:
                return _ZERO
            return _DIGITS if 0x31 <= ch <= 0x39 else None
        if state == _MANT:
            return _MANT_DIGITS if digit else None
        if state == _MANT_DIGITS:
            return _EXP_E if ch in (0x65, 0x45) else None
        if state == _EXP_E:
            if ch in (0x2B, 0x2D):
                return _EXP_SIGN
            return _EXP_DIGITS if digit else None
        if state == _EXP_SIGN:
            return _EXP_DIGITS if digit else None
        return None

    def _take_run(self, pattern: re.Pattern[bytes], data: bytes, start: int) -> int:
        """Append the run at ``start``, stopping one byte past the token limit; return the end.

        QEMU checks the limit after every character, so an over-long run is cut exactly there
        and its rest starts a new token; taking the whole run would make the errors a host gets
        depend on how its bytes were split into reads.
        """
        room = self.max_token_size + 1 - len(self.token)
        end = min(_run_end(pattern, data, start), start + room)
        self.token += data[start:end]
        self._check_size()
        return end

    def _check_size(self) -> None:
        # QEMU checks after every character; every path that grows a token calls this, which
        # keeps len(token) <= max_token_size between characters (the runs above rely on it)
        if len(self.token) > self.max_token_size:
            self._token_too_big()

    def _token_too_big(self) -> None:
        # QEMU hands the oversized token to the streamer, which rejects it on size
        self.state = _START
        self.token.clear()
        self._fail("JSON token size limit exceeded")

    def _take(self, kind: int) -> None:
        text = bytes(self.token)
        self.token.clear()
        self._token(kind, text)

    def _error(self) -> None:
        text = bytes(self.token)
        self.token.clear()
        self.state = _RECOVERY
        self._fail_raw(text)

    # --------------------------------------------------------------- streamer
    def _token(self, kind: int, text: bytes) -> None:
        if kind == LCURLY:
            self.braces += 1
        elif kind == RCURLY:
            self.braces -= 1
        elif kind == LSQUARE:
            self.brackets += 1
        elif kind == RSQUARE:
            self.brackets -= 1
        if self.token_size + len(text) + 1 > self.max_token_size:
            self._fail("JSON token size limit exceeded")
            return
        if len(self.tokens) + 1 > self.max_token_count:
            self._fail("JSON token count limit exceeded")
            return
        if self.braces + self.brackets > self.max_nesting:
            self._fail("JSON nesting depth limit exceeded")
            return
        self.tokens.append((kind, text))
        self.token_size += len(text)
        if (self.braces > 0 or self.brackets > 0) and self.braces >= 0 and self.brackets >= 0:
            return
        tokens = self.tokens
        self._clear_message()
        try:
            value = parse_tokens(tokens)
        except ParseFailedError as err:
            self.emit(None, err.desc)
            return
        except (ValueError, RecursionError, IndexError) as err:  # a parser bug: one message lost
            self.emit(None, f"JSON parse error, {type(err).__name__}")
            return
        self.emit(value, None)

    def _fail_raw(self, text: bytes) -> None:
        self._clear_message()
        self.emit(None, ParseFailedError.stray(text))

    def _fail(self, desc: str) -> None:
        self._clear_message()
        self.emit(None, desc)

    def _clear_message(self) -> None:
        self.braces = 0
        self.brackets = 0
        self.tokens = []
        self.token_size = 0


__all__ = ["ERROR", "MAX_NESTING", "MAX_TOKEN_COUNT", "MAX_TOKEN_SIZE", "JsonStreamer"]

"""The fast path for whole ASCII messages: the C ``json`` decoder with qemu-ga's number rules.

Anything it would read differently from QEMU's parser (duplicate keys, NaN/Infinity, ``\\u``
escapes, single quotes, control characters) makes it raise, and the caller falls back to the
exact streaming reader. Standard library only.
"""

from __future__ import annotations

import json
from typing import Any

from concierge.transport.qga.parser import INT64_MIN, MAX_INT_TOKEN, UINT64_MAX


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _qemu_int(text: str) -> int | float:
    if len(text) > MAX_INT_TOKEN:
        return float(text)  # out of 64-bit range; ``int()`` would refuse 4,300+ digits
    value = int(text)
    if INT64_MIN <= value <= UINT64_MAX:
        return value
    return float(text)


def _no_constants(name: str) -> Any:
    raise ValueError(name)


DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_int=_qemu_int, parse_constant=_no_constants)
WHITESPACE = " \t\r\n"

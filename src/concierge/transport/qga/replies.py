"""qemu-ga's reply lines: ``{"return": ...}`` / ``{"error": ...}`` with or without ``id``.

Member order follows QEMU's QDict hash order, computed once for these fixed key sets.
Standard library only.
"""

from __future__ import annotations

from typing import Any

from concierge.transport.qga.wire import encode, qdict_order, quote


class Encoded(str):
    """A reply value that is already JSON text (cached answers)."""

    __slots__ = ()


# member order of qemu-ga's reply objects (QDict hash order), fixed for these key sets
_RETURN_FIRST = qdict_order(["return", "id"])[0] == "return"
_ERROR_FIRST = qdict_order(["error", "id"])[0] == "error"
_ERROR_KEYS_CLASS_FIRST = qdict_order(["class", "desc"])[0] == "class"


class _Encoded(str):
    """A reply value that is already JSON text."""

    __slots__ = ()


def return_line(value: Any, req_id: Any, has_id: bool) -> bytes:
    """One whole ``{"return": ...}`` line."""
    body = value if type(value) is Encoded else encode(value)
    if not has_id:
        return ('{"return": ' + body + "}\n").encode("ascii")
    ident = encode(req_id)
    if _RETURN_FIRST:
        return ('{"return": ' + body + ', "id": ' + ident + "}\n").encode("ascii")
    return ('{"id": ' + ident + ', "return": ' + body + "}\n").encode("ascii")


def error_line(cls: str, desc: str, req_id: Any, has_id: bool) -> bytes:
    """One whole ``{"error": ...}`` line."""
    if _ERROR_KEYS_CLASS_FIRST:
        error = '{"class": ' + quote(cls) + ', "desc": ' + quote(desc) + "}"
    else:
        error = '{"desc": ' + quote(desc) + ', "class": ' + quote(cls) + "}"
    if not has_id:
        return ('{"error": ' + error + "}\n").encode("ascii")
    ident = encode(req_id)
    if _ERROR_FIRST:
        return ('{"error": ' + error + ', "id": ' + ident + "}\n").encode("ascii")
    return ('{"id": ' + ident + ', "error": ' + error + "}\n").encode("ascii")


def return_frame(req_id: Any, has_id: bool) -> tuple[str, str]:
    """What :func:`return_line` puts before and after the value (for replies sent in pieces)."""
    if not has_id:
        return '{"return": ', "}\n"
    ident = encode(req_id)
    if _RETURN_FIRST:
        return '{"return": ', ', "id": ' + ident + "}\n"
    return '{"id": ' + ident + ', "return": ', "}\n"

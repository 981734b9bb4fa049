"""Argument validation with qemu-ga's exact error texts (QEMU's QObject input visitor).

Members are checked in schema order, nested structs and lists depth first; the first failure
wins. Leftover members are reported in GLib hash-table order, as qemu-ga does. Returns the
arguments normalised as qemu-ga sees them (negative uint64 values wrap around).
Standard library only.
"""

from __future__ import annotations

from typing import Any

from concierge.transport.qga.argspec import ALTERNATES, ENUMS, STRUCTS, TypeSpec
from concierge.transport.qga.wire import GHashSet, qdict_order

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1


class InvalidArgumentsError(Exception):
    """The arguments do not match the schema; ``desc`` is qemu-ga's text."""

    def __init__(self, desc: str) -> None:
        super().__init__(desc)
        self.desc = desc


def _type_error(name: str, expected: str) -> InvalidArgumentsError:
    return InvalidArgumentsError(f"Invalid parameter type for '{name}', expected: {expected}")


def _is_int(value: Any) -> bool:
    return type(value) is int and _INT64_MIN <= value <= _INT64_MAX


def check_struct(members: dict[str, TypeSpec], given: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Validate one object against ``members``; ``prefix`` is the path for error texts."""
    out: dict[str, Any] = {}
    for raw_name, spec in members.items():
        optional = raw_name.startswith("*")
        name = raw_name[1:] if optional else raw_name
        if name not in given:
            if optional:
                continue
            raise InvalidArgumentsError(f"Parameter '{prefix}{name}' is missing")
        out[name] = check_value(spec, given[name], prefix + name, name)
    if len(out) != len(given):
        leftovers = [k for k in given if k not in out]
        if len(leftovers) == 1:
            first = leftovers[0]
        else:
            table = GHashSet()
            for key in qdict_order(given):
                table.add(key)
            for key in qdict_order(out):
                table.discard(key)
            first = next(iter(table))
        raise InvalidArgumentsError(f"Parameter '{prefix}{first}' is unexpected")
    return out


def check_value(spec: TypeSpec, value: Any, full: str, name: str) -> Any:
    """Validate one value; ``full`` is its path, ``name`` its member name."""
    if isinstance(spec, list):
        if type(value) is not list:
            raise _type_error(full, "array")
        return [check_value(spec[0], item, f"{full}[{i}]", name) for i, item in enumerate(value)]
    if spec == "int":
        if not _is_int(value):
            raise _type_error(full, "integer")
        return value
    if spec == "str":
        if type(value) is not str:
            raise _type_error(full, "string")
        return value
    if spec == "bool":
        if type(value) is not bool:
            raise _type_error(full, "boolean")
        return value
    if spec == "uint64":
        if type(value) is int and 0 <= value <= _UINT64_MAX:
            return value
        if _is_int(value):
            return value + (1 << 64)
        raise InvalidArgumentsError(f"Parameter '{full}' expects uint64")
    if spec in STRUCTS:
        if type(value) is not dict:
            raise _type_error(full, "object")
        return check_struct(STRUCTS[spec], value, full + ".")
    if spec in ENUMS:
        if type(value) is not str:
            raise _type_error(full, "string")
        if value not in ENUMS[spec]:
            raise InvalidArgumentsError(f"Parameter '{name}' does not accept value '{value}'")
        return value
    if spec in ALTERNATES:
        branches = ALTERNATES[spec]
        kind = (
            "bool"
            if type(value) is bool
            else "int"
            if type(value) in (int, float)
            else "str"
            if type(value) is str
            else ""
        )
        branch = branches.get(kind)
        if branch is None:
            raise _type_error(name, spec)
        return check_value(branch, value, full, name)
    raise AssertionError(f"unknown QAPI type {spec!r}")

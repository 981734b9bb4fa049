"""Read QEMU's QAPI schema files and check values against their types (conformance tests).

``load_schema(path)`` returns the schema's definitions by name; ``check_value(defs, type, v)``
lists every way ``v`` does not conform (empty when it does). Used to check that every QGA reply
has the shape the upstream schema promises. Standard library only.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

_INT_RANGES = {
    "int": (-(1 << 63), (1 << 63) - 1),
    "int8": (-128, 127),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "uint8": (0, 255),
    "uint16": (0, 65535),
    "uint32": (0, (1 << 32) - 1),
    "uint64": (0, (1 << 64) - 1),
    "size": (0, (1 << 64) - 1),
}


def find_reference(name: str) -> Path | None:
    """Locate ``shared/reference/NAME`` beside the repository (or via $CONCIERGE_SHARED)."""
    candidates = []
    if os.environ.get("CONCIERGE_SHARED"):
        candidates.append(Path(os.environ["CONCIERGE_SHARED"]) / "reference" / name)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidates.append(parent / "shared" / "reference" / name)
    return next((c for c in candidates if c.is_file()), None)


def load_schema(path: Path) -> dict[str, dict[str, Any]]:
    """Parse a QAPI schema file (Python-like literals, ``#`` comments) into definitions."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    defs: dict[str, dict[str, Any]] = {}
    depth = 0
    start = 0
    for index, char in enumerate(text):
        if char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                chunk = text[start : index + 1].replace(": true", ": True").replace(": false", ": False")
                expr = ast.literal_eval(chunk)
                kind = next(iter(expr))
                if kind in ("command", "struct", "enum", "union", "alternate"):
                    expr["meta"] = kind
                    defs[expr[kind]] = expr
    return defs


def _enum_values(definition: dict[str, Any]) -> list[str]:
    return [v["name"] if isinstance(v, dict) else v for v in definition["data"]]


def _members(defs: dict[str, dict[str, Any]], definition: dict[str, Any]) -> dict[str, Any]:
    members: dict[str, Any] = {}
    base = definition.get("base")
    if isinstance(base, str):
        members.update(_members(defs, defs[base]))
    elif isinstance(base, dict):
        members.update(base)
    data = definition.get("data", {})
    if definition["meta"] == "struct" and isinstance(data, dict):
        members.update(data)
    return {k: (v["type"] if isinstance(v, dict) else v) for k, v in members.items()}


def check_value(defs: dict[str, dict[str, Any]], spec: Any, value: Any, where: str = "$") -> list[str]:
    """Every mismatch between ``value`` and QAPI type ``spec`` (empty list: conforms)."""
    if isinstance(spec, list):
        if not isinstance(value, list):
            return [f"{where}: expected array"]
        return [e for i, v in enumerate(value) for e in check_value(defs, spec[0], v, f"{where}[{i}]")]
    if spec in _INT_RANGES:
        low, high = _INT_RANGES[spec]
        if type(value) is not int or not low <= value <= high:
            return [f"{where}: expected {spec}, got {value!r}"]
        return []
    if spec == "number":
        return [] if type(value) in (int, float) else [f"{where}: expected number"]
    if spec == "str":
        return [] if isinstance(value, str) else [f"{where}: expected string"]
    if spec == "bool":
        return [] if type(value) is bool else [f"{where}: expected boolean"]
    if spec == "any":
        return []
    definition = defs.get(spec)
    if definition is None:
        return [f"{where}: unknown type {spec}"]
    meta = definition["meta"]
    if meta == "enum":
        return [] if value in _enum_values(definition) else [f"{where}: {value!r} not in {spec}"]
    if meta == "alternate":
        for branch in definition["data"].values():
            if not check_value(defs, branch, value, where):
                return []
        return [f"{where}: matches no branch of {spec}"]
    if not isinstance(value, dict):
        return [f"{where}: expected object {spec}"]
    members = _members(defs, definition)
    errors: list[str] = []
    for raw, member_type in members.items():
        name = raw.lstrip("*")
        if name not in value:
            if not raw.startswith("*"):
                errors.append(f"{where}.{name}: missing")
            continue
        errors += check_value(defs, member_type, value[name], f"{where}.{name}")
    if meta == "union":
        branch = definition["data"].get(value.get(definition["discriminator"]))
        if branch is not None:
            extra = _members(defs, defs[branch])
            for raw, member_type in extra.items():
                name = raw.lstrip("*")
                if name in value:
                    errors += check_value(defs, member_type, value[name], f"{where}.{name}")
                elif not raw.startswith("*"):
                    errors.append(f"{where}.{name}: missing")
            members = {**members, **extra}
    known = {raw.lstrip("*") for raw in members}
    errors += [f"{where}.{k}: not in {spec}" for k in value if k not in known]
    return errors

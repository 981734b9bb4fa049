"""Load defaults.toml, then the main file, then drop-ins (sorted), merging tables key by key.

Every error names the file and the dotted key, e.g.
``/etc/concierge/concierge.d/10-x.toml: actors.monitor.restrat: unknown field``.
"""

from __future__ import annotations

import copy
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import msgspec.inspect

from concierge.config.schema import ActorSection, AgentConfig, ChannelSection
from concierge.errors import ConfigError

DEFAULT_FILE = Path("/etc/concierge/concierge.toml")
DEFAULT_DROPIN = Path("/etc/concierge/concierge.d")
T = TypeVar("T")
_ID = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


#: tables/arrays nested deeper than this are refused (real configs use 4); merging and
#: validating recurse, so an unbounded depth would end in RecursionError instead of ConfigError
MAX_DEPTH = 32


def _read(path: Path | None, text: str | None = None) -> dict[str, Any]:
    name = str(path) if path else "<defaults>"
    try:
        data = tomllib.loads(text if text is not None else path.read_text(encoding="utf-8"))  # type: ignore[union-attr]
    except OSError as err:
        raise ConfigError(f"cannot read: {err.strerror}", source=name) from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"not UTF-8 text (byte {err.start})", source=name) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"TOML syntax: {err}", source=name) from None
    except RecursionError:
        raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", source=name) from None
    except ValueError as err:  # tomllib lets int()'s digit limit through (4,300 digits)
        raise ConfigError(f"bad value: {err}", source=name) from None
    if _depth(data) > MAX_DEPTH:
        raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", source=name)
    return data


def _depth(value: Any) -> int:
    """Nesting depth of tables and arrays, computed without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _convert(data: Any, struct: type[T], source: str, prefix: str) -> T:
    try:
        return msgspec.convert(data, struct)
    except msgspec.ValidationError as err:
        raise validation_error(err, struct, source, prefix) from None


def validation_error(err: msgspec.ValidationError, struct: Any, source: str, prefix: str) -> ConfigError:
    """A ConfigError naming the dotted key; an unknown key says which keys exist there, a wrong
    enum value lists the allowed ones."""
    text = str(err)
    match = re.search(r"at `\$\.?(.*?)`", text)
    key = match.group(1).replace("[", ".").replace("]", "").replace("'", "") if match else ""
    message = re.sub(r" - at `.*`", "", text)
    field = re.search(r"unknown field `(.*?)`", message)
    if field:
        known = _known_keys(struct, key)
        key = f"{key}.{field.group(1)}" if key else field.group(1)
        message = "unknown key" + (f" (known here: {', '.join(known)})" if known else "")
    elif message.startswith("Invalid enum value"):
        allowed = _literal_values(struct, key)
        if allowed:
            message += f" (allowed: {', '.join(map(str, allowed))})"
    full = ".".join(part for part in (prefix, key) if part)
    return ConfigError(message, source=source, key=full)


def _type_at(struct: Any, dotted: str) -> Any:
    """The msgspec type info at a dotted path (list indexes and dict keys step inside)."""
    info: Any = msgspec.inspect.type_info(struct)
    for part in [p for p in dotted.split(".") if p]:
        while isinstance(info, msgspec.inspect.UnionType):
            info = next((t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)), info)
            if isinstance(info, msgspec.inspect.UnionType):
                return None
        if isinstance(info, msgspec.inspect.StructType):
            info = next((f.type for f in info.fields if f.name == part), None)
        elif isinstance(info, msgspec.inspect.DictType):
            info = info.value_type
        elif isinstance(info, msgspec.inspect.ListType | msgspec.inspect.TupleType | msgspec.inspect.VarTupleType):
            info = info.item_type if hasattr(info, "item_type") else None
        else:
            return None
    return info


def _known_keys(struct: Any, dotted: str) -> list[str]:
    info = _type_at(struct, dotted)
    return sorted(f.name for f in info.fields) if isinstance(info, msgspec.inspect.StructType) else []


def _literal_values(struct: Any, dotted: str) -> list[Any]:
    info = _type_at(struct, dotted)
    if isinstance(info, msgspec.inspect.LiteralType):
        return list(info.values)
    if isinstance(info, msgspec.inspect.EnumType):
        return [member.value for member in info.cls]
    return []


def _validate(data: dict[str, Any], source: str) -> AgentConfig:
    """Validate table by table so that every error names the exact dotted key."""
    for section, struct in (("actors", ActorSection), ("channels", ChannelSection)):
        table = data.get(section, {})
        if isinstance(table, dict):
            for name, entry in table.items():
                _convert(entry, struct, source, f"{section}.{name}")
    config = _convert(data, AgentConfig, source, "")
    for actor_id in config.actors:
        if not _ID.match(actor_id):
            raise ConfigError("actor ids are lowercase names", source=source, key=f"actors.{actor_id}")
    return config


def defaults_text() -> str:
    """The built-in defaults shipped in the package."""
    return resources.files("concierge.config").joinpath("defaults.toml").read_text()


def load_config(
    path: Path | None = None,
    dropin: Path | None = None,
    *,
    explicit: bool = False,
) -> tuple[AgentConfig, list[str]]:
    """Resolve the configuration; returns it with the list of files that were read.

    Each file is validated on its own merge step, so the error names the file that broke it.
    A missing main file is fine unless it was given explicitly.
    """
    data = _read(None, defaults_text())
    _validate(data, "<defaults>")
    used: list[str] = []
    files: list[Path] = []
    main = path or DEFAULT_FILE
    if main.exists() or explicit:
        files.append(main)
    drop = dropin or (main.parent / "concierge.d" if path else DEFAULT_DROPIN)
    if drop.is_dir():
        files.extend(sorted(drop.glob("*.toml")))
    for file in files:
        _merge(data, _read(file))
        _validate(data, str(file))
        used.append(str(file))
    return _validate(data, str(files[-1]) if files else "<defaults>"), used

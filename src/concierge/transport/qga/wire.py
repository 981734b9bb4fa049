"""qemu-ga's JSON writer: member order, separators, number and string formatting, byte for byte.

qemu-ga prints objects in the iteration order of QEMU's QDict (512 hash buckets, ``tdb_hash``,
newest first inside a bucket), compact with ``", "`` and ``": "``, non-ASCII and control
characters as upper-case ``\\uXXXX`` escapes, doubles with ``%.17g``. Also emulates the order in
which GLib's GHashTable yields leftover keys (qemu-ga names the *first* unexpected argument in
that order). Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

_BUCKETS = 512
_MASK32 = 0xFFFFFFFF


@lru_cache(maxsize=4096)
def _tdb_hash(key: str) -> int:
    raw = key.encode("utf-8", "surrogatepass")
    value = (0x238F13AF * len(raw)) & _MASK32
    for i, byte in enumerate(raw):
        value = (value + (byte << (i * 5 % 24))) & _MASK32
    return ((1103515243 * value + 12345) & _MASK32) % _BUCKETS


def qdict_order(keys: Iterable[str]) -> list[str]:
    """Keys in QDict iteration order, given their insertion order."""
    indexed = [(_tdb_hash(k), -i, k) for i, k in enumerate(keys)]
    indexed.sort()
    return [k for _, _, k in indexed]


#: key tuple -> its members in QDict order with their quoted ``"key": `` prefixes; replies reuse
#: a few dozen key sets, and hashing and quoting every key of every object in Python was most of
#: the cost of a long reply (192 memory blocks: 2.3 ms)
_order_cache: dict[tuple[str, ...], list[tuple[str, str]]] = {}
_ORDER_CACHE_MAX = 4096


def _members(value: dict[str, Any]) -> list[tuple[str, str]]:
    keys = tuple(value)
    members = _order_cache.get(keys)
    if members is None:
        members = [(k, quote(k) + ": ") for k in qdict_order(keys)]
        if len(_order_cache) < _ORDER_CACHE_MAX:
            _order_cache[keys] = members
    return members


_ESCAPE_RE = re.compile('[\x00-\x1f"\\\\\x7f-\U0010ffff]')
_SIMPLE = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    simple = _SIMPLE.get(ch)
    if simple is not None:
        return simple
    cp = ord(ch)
    if 0xD800 <= cp <= 0xDFFF:
        cp = 0xFFFD  # a lone surrogate is not valid UTF-8 either
    if cp > 0xFFFF:
        cp -= 0x10000
        return f"\\u{0xD800 + (cp >> 10):04X}\\u{0xDC00 + (cp & 0x3FF):04X}"
    return f"\\u{cp:04X}"


def quote(text: str) -> str:
    """A JSON string literal as qemu-ga writes it."""
    return '"' + _ESCAPE_RE.sub(_escape_char, text) + '"'


def encode(value: Any) -> str:
    """Serialise a reply value the way qemu-ga does (any nesting depth)."""
    try:
        return _encode(value)
    except RecursionError:
        return _encode_deep(value)


def _scalar(value: Any) -> str | None:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    kind = type(value)
    if kind is str:
        text: str = value
        if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
            return '"' + text + '"'
        return quote(text)
    if kind is int:
        return str(value)
    if kind is float:
        return format(value, ".17g")
    if kind is dict or kind is list or kind is tuple:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return format(float(value), ".17g")
    if isinstance(value, str):
        return quote(str(value))
    if isinstance(value, bytes):
        return quote(value.decode("utf-8", "replace"))
    if isinstance(value, dict | list | tuple):
        return None
    raise TypeError(f"cannot encode {kind.__name__} for QGA")


def _encode(value: Any) -> str:
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is not dict and kind is not list:
        text = _scalar(value)
        if text is not None:
            return text
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{" + ", ".join(prefix + _encode(value[k]) for k, prefix in _members(value)) + "}"
    return "[" + ", ".join([_encode(v) for v in value]) + "]"


class _Raw(str):
    """Already-serialised text on the work stack of :func:`_encode_deep`."""

    __slots__ = ()


def _encode_deep(value: Any) -> str:
    out: list[str] = []
    work: list[Any] = [value]
    while work:
        item = work.pop()
        if type(item) is _Raw:
            out.append(item)
            continue
        text = _scalar(item)
        if text is not None:
            out.append(text)
            continue
        if isinstance(item, dict):
            if not item:
                out.append("{}")
                continue
            pending: list[Any] = [_Raw("{")]
            for i, key in enumerate(qdict_order(item)):
                pending.append(_Raw((", " if i else "") + quote(key) + ": "))
                pending.append(item[key])
            pending.append(_Raw("}"))
        else:
            pending = [_Raw("[")]
            for i, element in enumerate(item):
                if i:
                    pending.append(_Raw(", "))
                pending.append(element)
            pending.append(_Raw("]"))
        work.extend(reversed(pending))
    return "".join(out)


# --------------------------------------------------------------------------- GHashTable order
_PRIME_MOD = (1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749)
_MIN_SHIFT = 3


def _g_str_hash(key: str) -> int:
    h = 5381
    for byte in key.encode("utf-8", "surrogatepass"):
        signed = byte - 256 if byte >= 128 else byte
        h = ((h << 5) + h + signed) & _MASK32
    return h if h >= 2 else 2


class GHashSet:
    """Enough of GLib's GHashTable (open addressing, quadratic probing, in-place resize) to
    reproduce the order in which it iterates the keys that are left after removals."""

    def __init__(self) -> None:
        self._set_shift(_MIN_SHIFT)
        self.hashes = [0] * self.size
        self.keys: list[str | None] = [None] * self.size
        self.nnodes = 0
        self.noccupied = 0

    def _set_shift(self, shift: int) -> None:
        self.size = 1 << shift
        self.mod = _PRIME_MOD[shift]
        self.mask = self.size - 1

    def _index(self, hash_value: int) -> int:
        return ((hash_value * 11) & _MASK32) % self.mod

    def _lookup(self, key: str) -> tuple[int, int]:
        hash_value = _g_str_hash(key)
        index = self._index(hash_value)
        step = 0
        tombstone = -1
        while self.hashes[index] != 0:
            if self.hashes[index] == hash_value and self.keys[index] == key:
                return index, hash_value
            if self.hashes[index] == 1 and tombstone < 0:
                tombstone = index
            step += 1
            index = (index + step) & self.mask
        return (tombstone if tombstone >= 0 else index), hash_value

    def add(self, key: str) -> None:
        """g_hash_table_insert(key)."""
        index, hash_value = self._lookup(key)
        old = self.hashes[index]
        if old >= 2:
            return
        self.hashes[index] = hash_value
        self.keys[index] = key
        self.nnodes += 1
        if old == 0:
            self.noccupied += 1
            self._maybe_resize()

    def discard(self, key: str) -> None:
        """g_hash_table_remove(key)."""
        index, _ = self._lookup(key)
        if self.hashes[index] < 2:
            return
        self.hashes[index] = 1
        self.keys[index] = None
        self.nnodes -= 1
        self._maybe_resize()

    def _maybe_resize(self) -> None:
        if (self.size > self.nnodes * 4 and self.size > 1 << _MIN_SHIFT) or (
            self.size <= self.noccupied + self.noccupied // 16
        ):
            self._resize()

    def _resize(self) -> None:
        old_size = self.size
        target = int(self.nnodes * 1.333)
        shift = 0
        while target:
            shift += 1
            target >>= 1
        self._set_shift(max(shift, _MIN_SHIFT))
        if self.size > old_size:
            self.hashes += [0] * (self.size - old_size)
            self.keys += [None] * (self.size - old_size)
        moved = [False] * max(self.size, old_size)
        for i in range(old_size):
            node_hash = self.hashes[i]
            if node_hash < 2:
                self.hashes[i] = 0
                continue
            if moved[i]:
                continue
            self.hashes[i] = 0
            key = self.keys[i]
            self.keys[i] = None
            while True:
                index = self._index(node_hash)
                step = 0
                while moved[index]:
                    step += 1
                    index = (index + step) & self.mask
                moved[index] = True
                replaced = self.hashes[index]
                replaced_key = self.keys[index]
                self.hashes[index] = node_hash
                self.keys[index] = key
                if replaced < 2:
                    break
                node_hash, key = replaced, replaced_key
        if self.size < old_size:
            del self.hashes[self.size :]
            del self.keys[self.size :]
        self.noccupied = self.nnodes

    def __iter__(self) -> Any:
        return (k for h, k in zip(self.hashes, self.keys, strict=True) if h >= 2)

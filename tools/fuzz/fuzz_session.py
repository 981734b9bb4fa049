"""Fuzz target: the session gateway's frame reader (``actors/session/framing.py``).

Both ends of the gateway stream use ``FrameReader``; the root end reads what any local user
sends. Properties: it raises nothing but ``ProtocolError``; whole, random and byte-by-byte
feeds give the same frames then the same error; every decoded frame re-encodes to the same
bytes' meaning (``encode`` then ``feed`` gives it back). Frames are compared by their msgpack
encoding: msgpack extension values (``msgspec.msgpack.Ext``) have no value-based ``repr``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from fuzz_common import DesyncError, same_for_every_chunking, split_seed

from concierge.actors.session.framing import FrameReader, encode
from concierge.errors import ProtocolError

_canonical = msgspec.msgpack.Encoder()


def _show(frame: Any) -> str:
    return _canonical.encode(frame).hex()


def _reader() -> Callable[[bytes], Iterable[Any]]:
    return FrameReader().feed


def one_input(data: bytes) -> None:
    """Check every property above on ``data`` (first two bytes choose the chunking)."""
    rng, payload = split_seed(data)
    same_for_every_chunking(_reader, rng, payload, (ProtocolError,), _show)
    frames: list[tuple[str, Any, tuple[bytes, ...]]] = []
    with contextlib.suppress(ProtocolError):
        frames.extend(FrameReader().feed(payload))
    for type_, body, blobs in frames:
        again = list(FrameReader().feed(encode(type_, body, blobs)))
        if [_show(f) for f in again] != [_show((type_, body, blobs))]:
            raise DesyncError(f"frame does not survive re-encoding: {(type_, body, blobs)!r} -> {again!r}")

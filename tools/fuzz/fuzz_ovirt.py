"""Fuzz target: the oVirt guest-agent line codec (``transport/ovirt/codec.py``).

* ``LineReader`` never raises and gives the same messages and garbage reports whatever the
  chunking, with the real 1 MiB cap and with a tiny one (so over-long lines are exercised);
* after any garbage, a newline resynchronises: the next well-formed line decodes;
* whatever decodes re-encodes (``encode``) to a line that decodes to the same message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fuzz_common import DesyncError, known_hostwire, same_for_every_chunking, split_seed

from concierge.transport.ovirt.codec import LineReader, Message, decode_line, encode

HEARTBEAT = b'{"__name__": "refresh", "apiVersion": 3}'


def _feeder(max_line: int) -> Callable[[], Callable[[bytes], Iterable[Any]]]:
    def make() -> Callable[[bytes], Iterable[Any]]:
        return LineReader(max_line).feed

    return make


def _round_trip(line: bytes) -> None:
    msg = decode_line(line)
    if not isinstance(msg, Message):
        return
    again = decode_line(encode(msg.name, msg.args).rstrip(b"\n"))
    if repr(again) != repr(msg):
        raise DesyncError(f"re-encoding changed the message: {msg!r} -> {again!r}")


def _check_resync(payload: bytes) -> None:
    reader = LineReader(64)
    out = list(reader.feed(payload + b"\n" + HEARTBEAT + b"\n"))
    if not out or out[-1] != Message("refresh", {"apiVersion": 3}):
        raise DesyncError(f"no resync after a newline: last decoded {out[-1:]!r}")


def one_input(data: bytes) -> None:
    """Check every property above on ``data`` (first two bytes choose the chunking)."""
    rng, payload = split_seed(data)
    try:
        for max_line in (1024 * 1024, 64):
            same_for_every_chunking(_feeder(max_line), rng, payload)
        for line in payload.split(b"\n"):
            _round_trip(line)
        _check_resync(payload)
    except DesyncError:
        raise
    except Exception as err:
        if known_hostwire(err):  # known: HOSTWIRE (deep nesting RecursionError)
            return
        raise

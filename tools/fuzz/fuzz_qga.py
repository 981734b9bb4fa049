"""Fuzz target: the QGA JSON lexer and parser (``transport/qga/lexer.py``, ``parser.py``).

Properties checked for every input:

* nothing but the documented outcomes: a value or qemu-ga's error text, never an exception;
* chunking does not matter: the stream fed whole, in random pieces or byte by byte emits the
  same values and errors in the same order (a host's writes are split arbitrarily by the port);
* resync as documented: whatever came before, ``0xFF`` discards a half-read request, so
  ``garbage + 0xFF + {"execute": "guest-ping"}`` always ends with that request parsed;
* the same again with tiny limits (token size, token count, nesting), so the limit paths are
  reached with the small inputs a fuzzer makes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fuzz_common import DesyncError, known_hostwire, same_for_every_chunking, split_seed

from concierge.transport.qga.lexer import JsonStreamer

PING = b'{"execute": "guest-ping"}'
_TINY = {"max_token_size": 48, "max_token_count": 24, "max_nesting": 6}


def _feeder(limits: dict[str, int]) -> Callable[[], Callable[[bytes], Iterable[Any]]]:
    def make() -> Callable[[bytes], Iterable[Any]]:
        emitted: list[tuple[Any, str | None]] = []
        streamer = JsonStreamer(lambda value, err: emitted.append((value, err)), **limits)

        def feed(piece: bytes) -> list[tuple[Any, str | None]]:
            streamer.feed(piece)
            out = list(emitted)
            emitted.clear()
            return out

        return feed

    return make


def _check_resync(limits: dict[str, int], payload: bytes) -> None:
    emitted: list[tuple[Any, str | None]] = []
    streamer = JsonStreamer(lambda value, err: emitted.append((value, err)), **limits)
    streamer.feed(payload + b"\xff" + PING)
    if not emitted or emitted[-1] != ({"execute": "guest-ping"}, None):
        raise DesyncError(f"no resync after 0xFF: last emitted {emitted[-1:]!r}")
    if not streamer.idle:
        raise DesyncError("streamer not idle after a complete request")


def one_input(data: bytes) -> None:
    """Check every property above on ``data`` (first two bytes choose the chunking)."""
    rng, payload = split_seed(data)
    for limits in ({}, _TINY):
        try:
            same_for_every_chunking(_feeder(limits), rng, payload)
            _check_resync(limits, payload)
        except DesyncError:
            raise
        except Exception as err:
            if known_hostwire(err):  # known: HOSTWIRE (huge integer id)
                return
            raise

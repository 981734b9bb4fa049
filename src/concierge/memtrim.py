"""Give freed heap back to the system after a large message went through this process.

A large reply passes through buffers of tens of MiB (the file data and its base64, msgpack and
ZeroMQ frames, the decoded reply, its pieces). glibc raises its mmap threshold to the size of
the last large block freed (up to 32 MiB), serves the next ones from the heap, and keeps freed
heap mapped: without a fix a process stays at its peak (seen: transport +100 MB after one
20 MiB guest-file-read, guestops +18 MB after 13 MiB, held at the top of a worker thread's
heap, which ``malloc_trim`` does not shrink). Two measures, both used by the processes that
carry large messages (transport, guestops):

- :func:`large_blocks_mmapped` fixes the mmap threshold at :data:`MMAP_THRESHOLD`: a block of
  that size or more is its own mapping and goes back to the system when freed, in any thread;
- :func:`trim_soon` runs ``malloc_trim(0)`` shortly after a large message (it returns free
  pages of the main heap and the bins of every arena; a few milliseconds, never per message).

Standard library and the runtime's NodeContext only; a libc without these calls (musl) makes
them no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

from concierge.runtime.node import NodeContext

log = logging.getLogger(__name__)

#: delays before trimming: the first lets the bridge drop its last references to the message,
#: the second catches buffers ZeroMQ's I/O thread was still sending
TRIM_DELAYS_S = (0.05, 0.5)

#: blocks of this size or more are mmapped (glibc's default starts at 128 KiB but moves)
MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # mallopt parameter number (malloc.h)

_libc: ctypes.CDLL | None = None
_looked_up = False
_scheduled: set[tuple[int, float]] = set()


def _glibc_function(name: str) -> Callable[..., int] | None:
    global _libc, _looked_up  # noqa: PLW0603 - looked up once per process
    if not _looked_up:
        _looked_up = True
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            _libc = None
    func: Callable[..., int] | None = getattr(_libc, name, None) if _libc is not None else None
    return func


def large_blocks_mmapped() -> bool:
    """Keep every block of :data:`MMAP_THRESHOLD` or more in its own mapping (process-wide);
    False where unsupported."""
    mallopt = _glibc_function("mallopt")
    return mallopt is not None and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1


def trim_now() -> None:
    """Return free heap pages to the system (no-op where unsupported)."""
    trim = _glibc_function("malloc_trim")
    if trim is not None:
        trim(0)


def trim_soon(ctx: NodeContext) -> None:
    """Trim on the bridge thread after each of :data:`TRIM_DELAYS_S` (coalesced per context);
    callable from any thread."""
    for delay in TRIM_DELAYS_S:
        key = (id(ctx), delay)
        if key in _scheduled:
            continue
        _scheduled.add(key)
        ctx.call_later(delay, functools.partial(_run, key))


def _run(key: tuple[int, float]) -> None:
    _scheduled.discard(key)
    try:
        trim_now()
    except OSError as err:  # loop boundary: trimming is an optimisation only
        log.info("malloc_trim failed: %s", err, extra={"event": "memtrim.failed"})

"""Timers of one bridge thread: a heap of ``(when, seq, Timer)`` entries.

Why a timer owns its callback instead of the heap entry: a cancelled timer must let go of
what its callback holds at once. The QGA front-end arms a deadline guard per routed command and
cancels it when the answer comes; a heap that kept the closure until the deadline (10 s, 60 s
for file reads) held every routed command's request state for that long (+14 MB per 100k
requests). Cancelling drops the callback; the husk stays in the heap (a removal from the middle
would be O(n)) and the heap is rebuilt when husks are more than half of it, so its size is
bounded by twice the number of live timers (plus ``COMPACT_MIN``).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

#: never rebuild a heap for fewer husks than this (rebuilding costs O(n))
COMPACT_MIN = 64


class Timer:
    """A scheduled callback; :meth:`cancel` is idempotent and callable from any thread."""

    __slots__ = ("_heap", "callback")

    def __init__(self, heap: TimerHeap, callback: Callable[[], None]) -> None:
        self._heap = heap
        self.callback: Callable[[], None] | None = callback

    @property
    def cancelled(self) -> bool:
        """True once cancelled or run."""
        return self.callback is None

    def cancel(self) -> None:
        """Drop the callback (and everything it holds) now; the heap forgets the entry later."""
        if self.callback is not None:
            self.callback = None
            # another thread may race the bridge on this count: it only decides when to
            # compact, and compaction recounts from scratch
            self._heap.husks += 1


class TimerHeap:
    """Due-ordered timers. Not thread-safe: the owner pushes and runs on one thread."""

    __slots__ = ("_entries", "_seq", "husks")

    def __init__(self) -> None:
        self._entries: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        #: cancelled entries still in the heap (approximate, see :meth:`Timer.cancel`)
        self.husks = 0

    def __len__(self) -> int:
        return len(self._entries)

    def new(self, callback: Callable[[], None]) -> Timer:
        """A timer not yet scheduled (any thread); :meth:`push` it on the owner's thread."""
        return Timer(self, callback)

    def push(self, when: float, timer: Timer) -> None:
        """Schedule ``timer`` at monotonic time ``when`` (owner thread)."""
        heapq.heappush(self._entries, (when, next(self._seq), timer))

    def next_due(self) -> float:
        """Monotonic time of the earliest entry (possibly a husk), or infinity."""
        return self._entries[0][0] if self._entries else math.inf

    def run_due(self, now: float) -> None:
        """Run every live timer due by ``now`` in due order, then compact if husks dominate."""
        entries = self._entries
        while entries and entries[0][0] <= now:
            timer = heapq.heappop(entries)[2]
            callback = timer.callback
            if callback is None:
                self.husks = max(0, self.husks - 1)
                continue
            timer.callback = None
            callback()
        if self.husks > COMPACT_MIN and 2 * self.husks > len(entries):
            self.compact()

    def compact(self) -> None:
        """Rebuild the heap without cancelled entries."""
        live = [entry for entry in self._entries if entry[2].callback is not None]
        heapq.heapify(live)
        self._entries = live
        self.husks = 0

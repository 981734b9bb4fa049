"""Helpers shared by the SPICE tests (a uniquely named module, importable from any test file)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from concierge.runtime.node import Lane
from concierge.testing.fdloop import PollingFakeContext


class RecordingContext(PollingFakeContext):
    """Also records the lane and ttl of every cast."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lanes: list[tuple[str, str, Lane, float]] = []

    def cast(
        self,
        dst: str,
        type: str,
        body: Any = None,
        *,
        blobs: tuple[bytes, ...] = (),
        lane: Lane = "default",
        ttl_s: float = 5.0,
    ) -> None:
        self.lanes.append((dst, type, lane, ttl_s))
        self.blobs_seen.append(blobs)
        super().cast(dst, type, body, blobs=blobs, lane=lane, ttl_s=ttl_s)

    blobs_seen: list[tuple[bytes, ...]]


def wait_for(cond: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """Poll ``cond`` until truthy (generous bound; never a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError("condition not met in time")

"""Helpers of the session-actor tests (a uniquely named module: ``conftest`` names collide
across test directories when imported from test files)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from concierge.testing.context import FakeContext
from concierge.testing.xservers import XORG_DUMMY_CONF

__all__ = ["XORG_DUMMY_CONF"]


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``pred`` until it returns something truthy (generous bound, not a timing test)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class RecordingContext(FakeContext):
    """A FakeContext that also keeps the blobs of casts (FakeContext.casts drops them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.blob_casts: list[tuple[str, str, Any, tuple[bytes, ...]]] = []

    def cast(
        self,
        dst: str,
        type: str,
        body: Any = None,
        *,
        blobs: tuple[bytes, ...] = (),
        **kwargs: Any,
    ) -> None:
        self.blob_casts.append((dst, type, body, tuple(blobs)))
        super().cast(dst, type, body, blobs=blobs, **kwargs)

    def deliver(self, type_: str, body: Any, blobs: tuple[bytes, ...] = ()) -> None:
        """Deliver a cast with blobs (FakeContext.tell has no blobs)."""
        from concierge.runtime.node import Incoming

        msg = Incoming(kind="cast", type=type_, body=body, src="session", blobs=blobs)
        self.call_soon(lambda: self.node.handle(msg))  # type: ignore[union-attr]


def sent_with_blobs(ctx: RecordingContext, type_: str) -> list[tuple[dict[str, Any], bytes]]:
    """(body, joined blobs) of the guest->client messages of ``type_``."""
    return [
        (body["body"], b"".join(blobs))
        for dst, mtype, body, blobs in list(ctx.blob_casts)
        if dst == "session" and mtype == "spice.send" and body.get("type") == type_
    ]


def sent(ctx: FakeContext, type_: str) -> list[dict[str, Any]]:
    """Bodies of the guest->client vdagent messages of ``type_`` the node cast to ``session``."""
    return [
        body["body"]
        for dst, mtype, body in list(ctx.casts)
        if dst == "session" and mtype == "spice.send" and body.get("type") == type_
    ]


def _free_display(start: int) -> int:
    for n in range(start, start + 200):
        if not os.path.exists(f"/tmp/.X{n}-lock") and not os.path.exists(f"/tmp/.X11-unix/X{n}"):
            return n
    raise RuntimeError("no free X display number")


def _start_x(argv: list[str], display: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not os.path.exists(f"/tmp/.X11-unix/X{display}"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"X server :{display} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.02)
    time.sleep(0.05)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

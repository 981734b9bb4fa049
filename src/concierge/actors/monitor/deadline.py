"""Hang-safe probe runner: a blocking call gets a deadline, and a key that hung is quarantined.

A probe such as ``statvfs`` on a dead NFS/FUSE mount can block in the kernel forever; no
thread can be interrupted there. The runner executes such calls on daemon worker threads and
waits at most ``timeout_s``. A key whose call timed out stays *stuck* (later calls fail fast,
costing nothing) until that very call returns, after which the key is probed normally again.
Stuck workers are replaced, up to ``max_stuck`` of them. Standard library only.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class ProbeTimeout(Exception):  # noqa: N818 - reads better at call sites than ProbeTimeoutError
    """The probe did not finish before its deadline (or its key is still stuck)."""


_Job = tuple[Callable[[], Any], "Future[Any]"]


class DeadlineRunner:
    """Runs callables with a deadline on a small, self-healing set of daemon threads."""

    def __init__(self, *, max_stuck: int = 16, name: str = "monitor-probe") -> None:
        self._name = name
        self._max_stuck = max_stuck
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0
        self._stuck: dict[str, Future[Any]] = {}
        self._closed = False

    def stuck_keys(self) -> list[str]:
        """Keys whose last call is still blocked."""
        with self._lock:
            return [key for key, fut in self._stuck.items() if not fut.done()]

    def run(self, key: str, func: Callable[[], T], timeout_s: float) -> T:
        """Return ``func()``, or raise :class:`ProbeTimeout` after ``timeout_s`` seconds.

        Exceptions raised by ``func`` propagate unchanged.
        """
        with self._lock:
            previous = self._stuck.get(key)
            if previous is not None:
                if not previous.done():
                    raise ProbeTimeout(f"{key} is still blocked")
                del self._stuck[key]
            if self._closed:
                raise ProbeTimeout("runner closed")
            if self._idle == 0:
                if self._threads - self._idle >= self._max_stuck + 4:
                    raise ProbeTimeout(f"too many blocked probes, {key} not attempted")
                self._threads += 1
                self._idle += 1
                threading.Thread(
                    target=self._work, name=f"{self._name}-{self._threads}", daemon=True
                ).start()
            self._idle -= 1
            future: Future[Any] = Future()
            self._jobs.put((func, future))
        try:
            return future.result(timeout=timeout_s)  # type: ignore[no-any-return]
        except FutureTimeout:
            with self._lock:
                self._stuck[key] = future
            future.add_done_callback(lambda _f: self._recovered(key))
            log.warning(
                "probe %s exceeded %.2fs; skipped until it returns",
                key,
                timeout_s,
                extra={"event": "monitor.probe_stuck"},
            )
            raise ProbeTimeout(f"{key} did not answer within {timeout_s:g}s") from None

    def _recovered(self, key: str) -> None:
        log.info("probe %s answered again", key, extra={"event": "monitor.probe_recovered"})

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            func, future = job
            try:
                future.set_result(func())
            except BaseException as err:  # noqa: BLE001 - worker boundary: the waiter re-raises it
                future.set_exception(err)
            with self._lock:
                self._idle += 1

    def close(self) -> None:
        """Let idle workers exit; stuck ones exit when their call returns (daemon threads)."""
        with self._lock:
            self._closed = True
            count = self._threads
        for _ in range(count):
            self._jobs.put(None)

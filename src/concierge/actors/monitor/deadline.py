"""Hang-safe probe runner: a blocking call gets a deadline, and a key that hung is quarantined.

A probe such as ``statvfs`` on a dead NFS/FUSE mount can block in the kernel forever; no
thread can be interrupted there. The runner executes such calls on daemon worker threads and
waits at most until the deadline. A key whose call timed out stays *stuck* (later calls fail
fast, costing nothing) until that very call returns, after which the key is probed normally
again. Workers blocked in stuck calls are replaced; past ``max_stuck`` of them every call
fails fast. :meth:`DeadlineRunner.run_many` probes several keys in parallel under one
deadline, so several dead mounts still cost a single timeout. Standard library only.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
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

    def __init__(self, *, max_stuck: int = 16, max_workers: int = 8, name: str = "monitor-probe") -> None:
        self._name = name
        self._max_stuck = max_stuck
        self._max_workers = max_workers
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
        outcome = self.run_many([(key, func)], timeout_s)[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[no-any-return]

    def run_many(self, jobs: Sequence[tuple[str, Callable[[], Any]]], timeout_s: float) -> list[Any]:
        """Run every job in parallel; each outcome is its result or the exception it raised
        (:class:`ProbeTimeout` for a job past the shared deadline or a stuck key)."""
        pending: list[Future[Any] | ProbeTimeout] = []
        for key, func in jobs:
            try:
                pending.append(self._submit(key, func))
            except ProbeTimeout as err:
                pending.append(err)
        deadline = time.monotonic() + timeout_s
        outcomes: list[Any] = []
        for (key, _), future in zip(jobs, pending, strict=True):
            if isinstance(future, ProbeTimeout):
                outcomes.append(future)
                continue
            try:
                outcomes.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
            except FutureTimeout:
                self._quarantine(key, future, timeout_s)
                outcomes.append(ProbeTimeout(f"{key} did not answer within {timeout_s:g}s"))
            except Exception as err:  # noqa: BLE001 - the probe's own failure is its outcome
                outcomes.append(err)
        return outcomes

    def run_many_then(
        self,
        jobs: Sequence[tuple[str, Callable[[], Any]]],
        timeout_s: float,
        on_done: Callable[[list[Any]], None],
        arm: Callable[[float, Callable[[], None]], Any],
    ) -> None:
        """:meth:`run_many` without a waiting thread: ``on_done(outcomes)`` runs exactly once,
        on the probe thread whose job completes the set (or the caller's, if all were done or
        refused at once), or at the deadline through ``arm(timeout_s, callback)`` (a timer of
        the caller's loop), unfinished jobs then quarantined as in :meth:`run_many`. Saves the
        hop to a thread that would only wait; hang-safety is unchanged."""
        pending: list[Future[Any] | ProbeTimeout] = []
        for key, func in jobs:
            try:
                pending.append(self._submit(key, func))
            except ProbeTimeout as err:
                pending.append(err)
        lock = threading.Lock()
        left = [sum(1 for f in pending if isinstance(f, Future))]
        finished = [False]
        timer: list[Any] = [None]

        def finish() -> None:
            with lock:
                if finished[0]:
                    return
                finished[0] = True
            if timer[0] is not None:
                timer[0].cancel()
            outcomes: list[Any] = []
            for (key, _), future in zip(jobs, pending, strict=True):
                if isinstance(future, ProbeTimeout):
                    outcomes.append(future)
                elif not future.done():
                    self._quarantine(key, future, timeout_s)
                    outcomes.append(ProbeTimeout(f"{key} did not answer within {timeout_s:g}s"))
                elif (err := future.exception()) is not None:
                    outcomes.append(err)
                else:
                    outcomes.append(future.result())
            on_done(outcomes)

        def one_done(_future: Future[Any]) -> None:
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                finish()

        if left[0] == 0:
            finish()
            return
        timer[0] = arm(timeout_s, finish)
        for future in pending:
            if isinstance(future, Future):
                future.add_done_callback(one_done)

    def _submit(self, key: str, func: Callable[[], Any]) -> Future[Any]:
        with self._lock:
            previous = self._stuck.get(key)
            if previous is not None:
                if not previous.done():
                    raise ProbeTimeout(f"{key} is still blocked")
                del self._stuck[key]
            if self._closed:
                raise ProbeTimeout("runner closed")
            stuck = sum(1 for fut in self._stuck.values() if not fut.done())
            if stuck >= self._max_stuck:
                raise ProbeTimeout(f"too many blocked probes, {key} not attempted")
            future: Future[Any] = Future()
            job = (func, future)
            # ``_idle`` is idle workers minus queued jobs no worker has taken yet, counted here
            # and not when a worker wakes: counted late, two jobs submitted back to back both
            # saw the same idle worker, and one waited behind a probe that may hang forever
            if self._idle <= 0 and self._threads - stuck < self._max_workers:
                self._threads += 1
                threading.Thread(
                    target=self._work, args=(job,), name=f"{self._name}-{self._threads}", daemon=True
                ).start()
            else:
                self._idle -= 1
                self._jobs.put(job)
            return future

    def _quarantine(self, key: str, future: Future[Any], timeout_s: float) -> None:
        with self._lock:
            self._stuck[key] = future
        future.add_done_callback(lambda _f: self._recovered(key))
        log.warning(
            "probe %s exceeded %.2fs; skipped until it returns",
            key,
            timeout_s,
            extra={"event": "monitor.probe_stuck"},
        )

    def _recovered(self, key: str) -> None:
        log.info("probe %s answered again", key, extra={"event": "monitor.probe_recovered"})

    def _work(self, first: tuple[Callable[[], Any], Future[Any]]) -> None:
        job: tuple[Callable[[], Any], Future[Any]] | None = first
        while job is not None:
            func, future = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(func())
                except BaseException as err:  # noqa: BLE001 - worker boundary: the waiter re-raises it
                    future.set_exception(err)
            with self._lock:
                self._idle += 1
            job = self._jobs.get()  # (the submitter already took this worker off ``_idle``)
        with self._lock:  # close(): its None was not counted against ``_idle``
            self._idle -= 1
            self._threads -= 1

    def close(self) -> None:
        """Let idle workers exit; stuck ones exit when their call returns (daemon threads)."""
        with self._lock:
            self._closed = True
            count = self._threads
        for _ in range(count):
            self._jobs.put(None)

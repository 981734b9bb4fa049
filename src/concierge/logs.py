"""Structured logging: one JSON object per line on stderr, or text for people; secrets redacted.

Every record carries a stable ``event`` name (``log.info("...", extra={"event": "x.y"})``) plus
the actor id and pid. :class:`Secret` wraps credentials so they can never reach a log line.
While filesystems are frozen, :class:`FreezableHandler` buffers records in memory instead of
writing them (a write to a frozen journal or file would block the whole process).
Standard library only.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import sys
import threading
import time
from typing import Any, Generic, TextIO, TypeVar

T = TypeVar("T")

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"})


class Secret(Generic[T]):
    """A value that must never be printed, logged or serialised by accident."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def reveal(self) -> T:
        """Return the wrapped value; call only at the point of use."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


class JsonFormatter(logging.Formatter):
    """Formats a record as one compact JSON object per line (journald keeps lines intact)."""

    def __init__(self, actor: str) -> None:
        super().__init__()
        self.actor = actor

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` with its extra fields; exceptions become a ``exc`` string."""
        data: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "actor": self.actor,
            "pid": record.process,
            "event": getattr(record, "event", record.name),
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in data:
                data[key] = value if isinstance(value, str | int | float | bool) else repr(value)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, separators=(",", ":"), default=repr)


class TextFormatter(logging.Formatter):
    """Human-readable single-line format for ``--log-format text``."""

    def __init__(self, actor: str) -> None:
        super().__init__()
        self.actor = actor

    def format(self, record: logging.LogRecord) -> str:
        """Render as ``time level actor event: message``."""
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        event = getattr(record, "event", record.name)
        line = f"{stamp} {record.levelname.lower():7} {self.actor:10} {event}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class FreezableHandler(logging.StreamHandler[TextIO]):
    """A stream handler that buffers (bounded) while the guest's filesystems are frozen."""

    def __init__(self, stream: TextIO, capacity: int = 2000) -> None:
        super().__init__(stream)
        self._held: collections.deque[logging.LogRecord | str] = collections.deque(maxlen=capacity)
        self._frozen = False
        self._hold_lock = threading.Lock()

    def set_frozen(self, frozen: bool) -> None:
        """Start buffering, or flush what was buffered and write through again."""
        with self._hold_lock:
            self._frozen = frozen
            held = list(self._held) if not frozen else []
            if not frozen:
                self._held.clear()
        for item in held:
            if isinstance(item, str):
                self.stream.write(item + self.terminator)
            else:
                super().emit(item)
        if held:
            self.flush()

    def is_frozen(self) -> bool:
        """True while records are being held in memory."""
        return self._frozen

    def hold_line(self, line: str) -> None:
        """Hold an already formatted line (a child's log line re-emitted by the supervisor)."""
        with self._hold_lock:
            self._held.append(line)

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record, or keep it in memory while frozen."""
        with self._hold_lock:
            if self._frozen:
                self._held.append(record)
                return
        super().emit(record)


def setup_logging(actor: str, *, fmt: str | None = None, level: str | None = None) -> FreezableHandler:
    """Configure the root logger of this process; returns the handler (for freeze control)."""
    fmt = fmt or os.environ.get("CONCIERGE_LOG_FORMAT", "json")
    level = level or os.environ.get("CONCIERGE_LOG_LEVEL", "info")
    handler = FreezableHandler(sys.stderr)
    handler.setFormatter(TextFormatter(actor) if fmt == "text" else JsonFormatter(actor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if logging.getLevelName(root.level) != level.upper():
        # setLevel clears the cache of every logger of the process: in an actor forked with the
        # level already set, that would copy the pages of all of them for nothing
        root.setLevel(level.upper())
    return handler

"""Structured logging: one JSON object per line on stderr, or text for people; secrets redacted.

Every record carries a stable ``event`` name (``log.info("...", extra={"event": "x.y"})``) plus
the actor id and pid. :class:`Secret` wraps credentials so they can never reach a log line.
While filesystems are frozen, :class:`FreezableHandler` buffers records in memory instead of
writing them (a write to a frozen journal or file would block the whole process).

Priorities: when stderr is the journal's stream (``$JOURNAL_STREAM`` names its device and
inode), every line starts with the sd-daemon ``<N>`` syslog priority, so ``journalctl -p err``
finds errors. Actors always write that prefix on the pipe to their supervisor (which knows the
level of each line it re-emits and strips the prefix when its own stderr is not the journal).
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

#: logging level -> syslog priority (sd-daemon(3) prefixes)
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
#: the line an actor writes last on its stderr pipe when it exits because of a config error, an
#: absent resource or a crash: the reason ``concierge status`` shows (consumed, not re-emitted)
EXIT_REASON_MARK = "\x1econcierge-exit-reason "
#: lines kept of the supervisor's own log for ``concierge logs supervisor``
SUPERVISOR_RING = 2000

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


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level (between the named levels: the next more severe)."""
    for level in sorted(_PRIORITY, reverse=True):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


def split_priority(line: str) -> tuple[int | None, str]:
    """``"<3>text"`` -> ``(3, "text")``; a line without a prefix -> ``(None, line)``."""
    if len(line) >= 3 and line[0] == "<" and line[2] == ">" and line[1].isdigit():
        return int(line[1]), line[3:]
    return None, line


def journal_stream(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (stderr) is the journal's stream this service was started with."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        info = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def resolve_format(fmt: str | None) -> str:
    """``auto`` (the default): text on a terminal, JSON otherwise (the journal, a pipe, a file)."""
    if fmt in ("json", "text"):
        return fmt
    try:
        return "text" if sys.stderr.isatty() else "json"
    except (ValueError, AttributeError):
        return "json"


class PriorityFormatter(logging.Formatter):
    """Prefixes every line of another formatter's output with ``<N>`` (a traceback too)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        """``<3>...`` for an error, ``<6>...`` for info."""
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


class RingHandler(logging.Handler):
    """Keeps the last formatted lines in memory and hands each new one to listeners: the
    supervisor's own log for ``concierge logs supervisor`` (actors' lines have their own ring)."""

    def __init__(self, formatter: logging.Formatter, capacity: int = SUPERVISOR_RING) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines: collections.deque[str] = collections.deque(maxlen=capacity)
        self.listeners: list[Any] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Format and keep the record; a listener's failure never reaches the caller."""
        try:
            line = self.format(record)
            self.lines.append(line)
            for listener in self.listeners:
                listener(line)
        except Exception:  # noqa: BLE001 - logging must never raise into the code that logs
            self.handleError(record)


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


def make_formatter(actor: str, fmt: str | None) -> logging.Formatter:
    """Text or JSON (``auto``: text on a terminal)."""
    return TextFormatter(actor) if resolve_format(fmt) == "text" else JsonFormatter(actor)


def setup_logging(
    actor: str, *, fmt: str | None = None, level: str | None = None, priority: bool | None = None
) -> FreezableHandler:
    """Configure the root logger of this process; returns the handler (for freeze control).

    ``priority`` prefixes lines with ``<N>``; None: when stderr is the journal's stream.
    """
    fmt = fmt or os.environ.get("CONCIERGE_LOG_FORMAT", "auto")
    level = level or os.environ.get("CONCIERGE_LOG_LEVEL", "info")
    handler = FreezableHandler(sys.stderr)
    formatter = make_formatter(actor, fmt)
    if priority if priority is not None else journal_stream():
        formatter = PriorityFormatter(formatter)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if logging.getLevelName(root.level) != level.upper():
        # setLevel clears the cache of every logger of the process: in an actor forked with the
        # level already set, that would copy the pages of all of them for nothing
        root.setLevel(level.upper())
    return handler

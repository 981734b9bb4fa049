"""The one exception tree of Concierge, and the stable error codes that cross process boundaries.

    ConciergeError
    ├── ConfigError          a config file or key is wrong (exit 78, never restarted)
    ├── UnavailableError     a device or service is not there yet (exit 69, retried slowly)
    ├── ActorError           a request failed with a wire code (BAD_REQUEST, NOT_FOUND, ...)
    │   └── RequestTimeoutError   the peer did not answer before the deadline
    └── ProtocolError        bytes from a host or a peer could not be decoded

Must not import anything but the standard library.
"""

from __future__ import annotations

import enum
import os


class ErrorCode(enum.StrEnum):
    """Small stable set of error codes carried in ``err`` envelopes (never tracebacks)."""

    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    BAD_REQUEST = "BAD_REQUEST"
    NOT_FOUND = "NOT_FOUND"
    UNAVAILABLE = "UNAVAILABLE"
    TIMEOUT = "TIMEOUT"
    BACKPRESSURE = "BACKPRESSURE"
    FORBIDDEN = "FORBIDDEN"
    FROZEN = "FROZEN"
    INTERNAL = "INTERNAL"


class ExitCode(enum.IntEnum):
    """Process exit codes the supervisor classifies (sysexits.h values)."""

    OK = 0
    SOFTWARE = os.EX_SOFTWARE  # 70: crash or watchdog kill, restart with backoff
    USAGE = os.EX_USAGE  # 64: bad arguments, never restarted
    UNAVAILABLE = os.EX_UNAVAILABLE  # 69: resource absent, parole retry
    TEMPFAIL = os.EX_TEMPFAIL  # 75: transient, restart with backoff
    CONFIG = os.EX_CONFIG  # 78: bad config, never restarted
    REFUSED = os.EX_NOPERM  # 77: refused by a peer (a second session agent): never restarted


class ConciergeError(Exception):
    """Root of every error Concierge raises on purpose."""


class ConfigError(ConciergeError):
    """A configuration problem, always naming the file and the key."""

    def __init__(self, message: str, *, source: str = "", key: str = "") -> None:
        where = ":".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.key = key


class UnavailableError(ConciergeError):
    """A resource the actor needs is absent for now (device, display, bus)."""


class ProtocolError(ConciergeError):
    """Undecodable bytes from a host channel or a peer process."""


class ActorError(ConciergeError):
    """A request answered with an error code; ``code`` is one of :class:`ErrorCode`."""

    def __init__(self, code: ErrorCode | str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = ErrorCode(code) if code in ErrorCode.__members__ else ErrorCode.INTERNAL
        self.message = message
        self.retryable = retryable


class RequestTimeoutError(ActorError):
    """The peer did not answer before the request's deadline."""

    def __init__(self, message: str = "request timed out") -> None:
        super().__init__(ErrorCode.TIMEOUT, message, retryable=True)

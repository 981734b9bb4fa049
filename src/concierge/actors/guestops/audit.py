"""The audit trail: one log record per guestops call, never with contents or secrets.

Fields: class, command, target (path, executable or user name; never argv, env, data, keys or
passwords), result (ok/denied/error), the error code, a few safe numbers (handle, pid, byte
counts) and the duration. Error texts are not logged because some quote key material.
Standard library only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from concierge.errors import ActorError, ErrorCode

log = logging.getLogger("concierge.audit.guestops")


@dataclass
class AuditRecord:
    """What one call may add to its audit line while it runs."""

    klass: str
    command: str
    target: str = ""
    numbers: dict[str, int] = field(default_factory=dict)


@contextmanager
def audited(klass: str, command: str, target: str = "") -> Iterator[AuditRecord]:
    """Log the call's outcome and duration when the block ends (also on errors)."""
    record = AuditRecord(klass, command, target)
    started = time.monotonic()
    result, code = "ok", ""
    try:
        yield record
    except ActorError as err:
        result = "denied" if err.code == ErrorCode.FORBIDDEN else "error"
        code = str(err.code)
        raise
    except Exception:
        result, code = "error", str(ErrorCode.INTERNAL)
        raise
    finally:
        extra: dict[str, object] = {
            "event": "guestops.audit",
            "class": klass,
            "command": command,
            "target": record.target,
            "result": result,
            "duration_ms": round((time.monotonic() - started) * 1000, 3),
        }
        if code:
            extra["code"] = code
        extra.update(record.numbers)
        log.log(
            logging.WARNING if result == "denied" else logging.INFO,
            "%s %s %s: %s",
            klass,
            command,
            record.target,
            result,
            extra=extra,
        )

"""utmp records (``/var/run/utmp``), the one reader shared by the monitor (guest-get-users) and
sso (sessions where logind is missing). Standard library only.

Why not ``psutil.users()`` (issue 18 suggested it): psutil reads only the system's utmp path
(tests and ``utmp_path`` could not point it elsewhere), keeps whole seconds of ``ut_tv`` (qemu-ga
reports ``tv_sec + tv_usec / 1e6``, so guest-get-users' ``login-time`` would no longer match
qemu-ga's) and turns an empty host into ``"localhost"``. glibc's ``struct utmp`` is the same
384 bytes on every 64-bit Linux ABI (``ut_tv`` is two int32 there for 32/64-bit compatibility).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

UTMP_RECORD = struct.Struct("<h2xi32s4s32s256shhi2i16s20x")
USER_PROCESS = 7
#: a utmp file larger than this is not one (the kernel's pid space bounds a real one far below)
MAX_UTMP_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class UtmpRecord:
    """One USER_PROCESS record."""

    user: str
    line: str
    host: str
    pid: int
    login_time: float  # tv_sec + tv_usec / 1e6, as qemu-ga computes it


def pack_utmp(
    user: str,
    tv_sec: int,
    tv_usec: int = 0,
    *,
    ut_type: int = USER_PROCESS,
    line: str = "pts/0",
    pid: int = 1,
    host: str = "",
) -> bytes:
    """One utmp record (tests and fixtures build real utmp files with it)."""
    return UTMP_RECORD.pack(
        ut_type, pid, line.encode(), b"", user.encode(), host.encode(), 0, 0, 0, tv_sec, tv_usec, b""
    )


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def read_records(path: str) -> list[UtmpRecord] | None:
    """USER_PROCESS records of ``path`` in file order; None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_UTMP_BYTES)
    except OSError:
        return None
    records: list[UtmpRecord] = []
    for offset in range(0, len(data) - UTMP_RECORD.size + 1, UTMP_RECORD.size):
        fields = UTMP_RECORD.unpack_from(data, offset)
        if fields[0] != USER_PROCESS:
            continue
        login = float(fields[9]) + fields[10] / 1_000_000.0
        records.append(UtmpRecord(_text(fields[4]), _text(fields[2]), _text(fields[5]), int(fields[1]), login))
    return records

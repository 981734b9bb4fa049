"""Name each process in ``ps`` and ``systemctl status``: ``concierge: monitor``.

Every actor is forked from one interpreter (or started as ``python3 -m ...runner``), so
without this all of them show the supervisor's command line. The kernel shows, as a
process's command line, the memory between ``arg_start`` and ``arg_end`` (fields 48 and 49 of
``/proc/self/stat``); rewriting those bytes in place through ``/proc/self/mem`` renames the
process with no dependency and no extension module. The title is cut to the original length
(``python3 -m concierge run`` leaves room for any actor name). The argv strings live on the
process's own stack page, which is private already: renaming copies no shared page.
Standard library only; never raises (a process that cannot rename itself runs unnamed).
"""

from __future__ import annotations

import contextlib
import ctypes

#: indexes of arg_start / arg_end among the fields after the ``(comm)`` of /proc/self/stat
_ARG_START, _ARG_END = 45, 46
PR_SET_NAME = 15


def argv_area() -> tuple[int, int]:
    """Start and end address of this process's argument strings, (0, 0) if unknown."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return int(fields[_ARG_START]), int(fields[_ARG_END])
    except (OSError, IndexError, ValueError):
        return 0, 0


def set_title(title: str, *, comm: str = "") -> bool:
    """Show ``title`` as this process's command line (and ``comm``, <= 15 bytes, in top)."""
    if comm:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, comm.encode()[:15], 0, 0, 0)
    start, end = argv_area()
    size = end - start
    if size <= 1:
        return False
    data = title.encode("utf-8", "replace")[: size - 1]
    try:
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            mem.write(data + b"\0" * (size - len(data)))
    except (OSError, ValueError, OverflowError):
        return False
    return True

"""Sessions from utmp where logind is missing (no systemd, no system bus), as qemu-ga and the
oVirt agent do there: vdsm expects ``active-user`` on every refresh (``"None"`` for nobody),
and without sessions the sso actor used to wait for logind forever.

A record whose process is gone (a crashed login left it behind) is not a session. A login on
a virtual console or an X display without a remote host is local (seat0); anything else is
remote. Lock, unlock and log-off need logind and are refused in this mode.
"""

from __future__ import annotations

import os
import pwd

from concierge.actors.sso.logind import SessionInfo
from concierge.actors.utmp import UtmpRecord, read_records


def _is_local(record: UtmpRecord) -> bool:
    return record.host == "" or record.host.startswith(":")


def _on_console(record: UtmpRecord) -> bool:
    return record.line.startswith(("tty", ":")) or record.line == "console"


def _uid(user: str) -> int:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return -1


def session_of(record: UtmpRecord) -> SessionInfo:
    """The logind-shaped view of one login record."""
    local = _is_local(record)
    key = f"utmp-{record.pid}-{record.line}"
    return SessionInfo(
        id=key,
        path=key,
        user=record.user,
        uid=_uid(record.user),
        seat="seat0" if local and _on_console(record) else "",
        active=True,
        locked=False,
        type="x11" if record.line.startswith(":") or record.host.startswith(":") else "tty",
        remote=not local,
        klass="user",
        timestamp_us=int(record.login_time * 1_000_000),
    )


def utmp_sessions(path: str, proc_root: str = "/proc") -> list[SessionInfo]:
    """Live login sessions recorded in ``path`` (empty when it is missing)."""
    sessions: list[SessionInfo] = []
    for record in read_records(path) or []:
        if not record.user or (record.pid > 0 and not os.path.exists(f"{proc_root}/{record.pid}")):
            continue
        sessions.append(session_of(record))
    return sessions

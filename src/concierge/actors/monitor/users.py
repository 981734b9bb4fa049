"""Logged-in users: utmp read directly (qemu-ga's rules: USER_PROCESS records, one entry per
user with the earliest login, in order of first appearance), or logind's sessions over
D-Bus (jeepney) when utmp is missing or empty, which is common on current distributions.

Must not import the node or transport code.
"""

from __future__ import annotations

import struct
from typing import Any

#: glibc's struct utmp on 64-bit Linux (384 bytes; tv is two int32 for 32/64-bit compat)
UTMP_RECORD = struct.Struct("<h2xi32s4s32s256shhi2i16s20x")
USER_PROCESS = 7


def pack_utmp(
    user: str, tv_sec: int, tv_usec: int = 0, *, ut_type: int = USER_PROCESS, line: str = "pts/0", pid: int = 1
) -> bytes:
    """One utmp record (tests and fixtures build synthetic utmp files with it)."""
    return UTMP_RECORD.pack(ut_type, pid, line.encode(), b"", user.encode(), b"", 0, 0, 0, tv_sec, tv_usec, b"")


def read_utmp(path: str) -> list[dict[str, Any]] | None:
    """Users from ``path`` in qemu-ga's order; None when the file does not exist."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    except OSError:
        return None
    earliest: dict[str, float] = {}
    order: list[str] = []
    for offset in range(0, len(data) - UTMP_RECORD.size + 1, UTMP_RECORD.size):
        fields = UTMP_RECORD.unpack_from(data, offset)
        if fields[0] != USER_PROCESS:
            continue
        name = fields[4].split(b"\0", 1)[0].decode("utf-8", "replace")
        login = float(fields[9]) + fields[10] / 1_000_000.0
        if name in earliest:
            earliest[name] = min(earliest[name], login)
            continue
        earliest[name] = login
        order.append(name)
    return [{"user": n, "login_time": earliest[n], "source": "utmp"} for n in order]


def read_logind(bus: str, timeout_s: float) -> list[dict[str, Any]]:
    """Users with a ``user``-class session in logind, earliest session start per user.

    Raises OSError/ConnectionError/TimeoutError when logind cannot be reached.
    """
    from jeepney import DBusAddress, DBusErrorResponse  # noqa: PLC0415
    from jeepney.io.blocking import open_dbus_connection  # noqa: PLC0415

    manager = DBusAddress(
        "/org/freedesktop/login1",
        bus_name="org.freedesktop.login1",
        interface="org.freedesktop.login1.Manager",
    )
    conn = open_dbus_connection(bus=bus)
    try:
        return _sessions(conn, manager, timeout_s)
    except DBusErrorResponse as err:  # logind absent or refusing: report as unreachable
        raise ConnectionError(str(err)) from err
    finally:
        conn.close()


def _sessions(conn: Any, manager: Any, timeout_s: float) -> list[dict[str, Any]]:
    """Earliest ``user``-class session start per user, in logind's listing order."""
    from jeepney import DBusAddress, Properties, new_method_call  # noqa: PLC0415

    reply = conn.send_and_get_reply(new_method_call(manager, "ListSessions"), timeout=timeout_s)
    sessions = reply.body[0]
    earliest: dict[str, float] = {}
    order: list[str] = []
    for _sid, _uid, user, _seat, path in sessions:
        session = DBusAddress(
            path,
            bus_name="org.freedesktop.login1",
            interface="org.freedesktop.login1.Session",
        )
        props = conn.send_and_get_reply(Properties(session).get_all(), timeout=timeout_s)
        values = {key: val for key, (_sig, val) in props.body[0].items()}
        if values.get("Class", "user") != "user":
            continue
        started = float(values.get("Timestamp", 0)) / 1_000_000.0
        if user in earliest:
            earliest[user] = min(earliest[user], started)
        else:
            earliest[user] = started
            order.append(user)
    return [{"user": n, "login_time": earliest[n], "source": "logind"} for n in order]

"""Logged-in users: utmp read directly (qemu-ga's rules: USER_PROCESS records, one entry per
user with the earliest login, in order of first appearance), or logind's sessions over
D-Bus (jeepney) when utmp is missing or empty, which is common on current distributions.

Must not import the node or transport code.
"""

from __future__ import annotations

from typing import Any

from concierge.actors.utmp import read_records


def read_utmp(path: str) -> list[dict[str, Any]] | None:
    """Users from ``path`` in qemu-ga's order; None when the file cannot be read."""
    records = read_records(path)
    if records is None:
        return None
    earliest: dict[str, float] = {}
    order: list[str] = []
    for record in records:
        if record.user in earliest:
            earliest[record.user] = min(earliest[record.user], record.login_time)
            continue
        earliest[record.user] = record.login_time
        order.append(record.user)
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

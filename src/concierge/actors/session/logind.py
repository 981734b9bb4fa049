"""A small blocking logind client over jeepney (system bus): sessions, seat0's active session.

Called from the gateway's worker thread only (D-Bus round trips must never run on the bridge).
Must not import zmq or pykka.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from typing import Any

from concierge.errors import UnavailableError

BUS_NAME = "org.freedesktop.login1"
MANAGER_PATH = "/org/freedesktop/login1"
MANAGER_IFACE = "org.freedesktop.login1.Manager"
SESSION_IFACE = "org.freedesktop.login1.Session"
SEAT_IFACE = "org.freedesktop.login1.Seat"
GRAPHICAL_TYPES = frozenset({"x11", "wayland", "mir"})


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What the gateway needs to know about one logind session."""

    id: str
    uid: int
    session_class: str
    type: str
    locked: bool
    timestamp: int = 0


class Logind:
    """Blocking logind queries; raises UnavailableError when the bus or logind is absent."""

    def __init__(self, address: str = "SYSTEM", timeout_s: float = 2.0) -> None:
        try:
            from jeepney.io.blocking import open_dbus_connection  # noqa: PLC0415 - optional

            self._conn: Any = open_dbus_connection(bus=address)
        except (OSError, KeyError, ValueError) as err:
            raise UnavailableError(f"no system bus: {err}") from err
        self.timeout_s = timeout_s

    def close(self) -> None:
        """Close the bus connection; a thread blocked in :meth:`wait_signal` wakes up."""
        with contextlib.suppress(OSError):
            self._conn.sock.shutdown(socket.SHUT_RDWR)  # close() alone does not wake recv()
        self._conn.close()

    def _call(self, path: str, iface: str, method: str, sig: str | None = None, *args: Any) -> Any:
        from jeepney import DBusAddress, new_method_call  # noqa: PLC0415
        from jeepney.wrappers import DBusErrorResponse  # noqa: PLC0415

        addr = DBusAddress(path, bus_name=BUS_NAME, interface=iface)
        msg = new_method_call(addr, method, sig, args)
        try:
            reply = self._conn.send_and_get_reply(msg, timeout=self.timeout_s)
        except (OSError, TimeoutError) as err:
            raise UnavailableError(f"logind {method}: {err}") from err
        if reply.header.message_type.name == "error":
            raise UnavailableError(f"logind {method}: {DBusErrorResponse(reply)}")
        return reply.body

    def _prop(self, path: str, iface: str, name: str) -> Any:
        (variant,) = self._call(path, "org.freedesktop.DBus.Properties", "Get", "ss", iface, name)
        return variant[1]

    def session_path_by_pid(self, pid: int) -> str | None:
        """GetSessionByPID, or None when the process is in no session (systemd user unit)."""
        try:
            (path,) = self._call(MANAGER_PATH, MANAGER_IFACE, "GetSessionByPID", "u", pid)
        except UnavailableError:
            return None
        return str(path)

    def sessions(self) -> list[tuple[str, int, str]]:
        """(id, uid, object path) of every session."""
        (rows,) = self._call(MANAGER_PATH, MANAGER_IFACE, "ListSessions")
        return [(str(r[0]), int(r[1]), str(r[4])) for r in rows]

    def info(self, path: str) -> SessionInfo:
        """Id, uid, class, type and lock state of the session at ``path``.

        One GetAll call: a consistent snapshot (separate Gets could mix two states) and one
        round trip instead of six.
        """
        (props,) = self._call(path, "org.freedesktop.DBus.Properties", "GetAll", "s", SESSION_IFACE)
        values = {name: variant[1] for name, variant in props.items()}
        try:
            return SessionInfo(
                id=str(values["Id"]),
                uid=int(values["User"][0]),
                session_class=str(values.get("Class", "user")),
                type=str(values.get("Type", "")),
                locked=bool(values.get("LockedHint", False)),
                timestamp=int(values.get("Timestamp", 0)),
            )
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise UnavailableError(f"logind session {path}: {err}") from err

    def active_session(self, seat: str = "seat0") -> str:
        """Id of the seat's active session ('' if none)."""
        session = self._prop(f"{MANAGER_PATH}/seat/{seat}", SEAT_IFACE, "ActiveSession")
        return str(session[0])

    def watch(self) -> None:
        """Subscribe to logind's signals (session switch, lock, new/removed sessions)."""
        from jeepney.bus_messages import MatchRule, message_bus  # noqa: PLC0415

        rule = MatchRule(type="signal", sender=BUS_NAME, path_namespace=MANAGER_PATH)
        self._conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=self.timeout_s)

    def wait_signal(self) -> None:
        """Block until any watched signal arrives; OSError once :meth:`close` was called."""
        while True:
            msg = self._conn.receive()
            if msg.header.message_type.name == "signal":
                return

    def session_of(self, pid: int, uid: int) -> SessionInfo | None:
        """The session of ``pid``; else the newest graphical session of ``uid`` (as vdagentd)."""
        path = self.session_path_by_pid(pid)
        if path is not None:
            return self.info(path)
        candidates = [self.info(p) for _, suid, p in self.sessions() if suid == uid]
        graphical = [s for s in candidates if s.type in GRAPHICAL_TYPES]
        return max(graphical, key=lambda s: s.timestamp, default=None)

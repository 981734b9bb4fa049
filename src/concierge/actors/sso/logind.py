"""Logind over D-Bus (jeepney): sessions, their properties, lock/unlock/terminate, signals.

Blocking calls; use them from worker/actor threads, never on the bridge. A jeepney threading
router owns the connection; signals (SessionNew, SessionRemoved, PropertiesChanged of sessions)
are delivered to ``on_signal`` from a dedicated thread. Must not import zmq or the runtime.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jeepney import DBusAddress, MatchRule, Message, message_bus, new_method_call
from jeepney.io.threading import DBusConnection, DBusRouter, open_dbus_connection
from jeepney.wrappers import DBusErrorResponse, unwrap_msg

log = logging.getLogger(__name__)

LOGIN1 = "org.freedesktop.login1"
MANAGER_PATH = "/org/freedesktop/login1"
SESSION_IFACE = LOGIN1 + ".Session"
PROPS_IFACE = "org.freedesktop.DBus.Properties"
GRAPHICAL = frozenset({"x11", "wayland", "mir"})
CALL_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What sso needs to know about one logind session."""

    id: str
    path: str
    user: str
    uid: int
    seat: str
    active: bool
    locked: bool
    type: str
    remote: bool
    klass: str
    timestamp_us: int

    @property
    def graphical(self) -> bool:
        """True for x11/wayland/mir sessions."""
        return self.type in GRAPHICAL

    def event_body(self) -> dict[str, Any]:
        """The ``session.*`` event body (see messages.SessionEvent)."""
        return {
            "session": self.id,
            "user": self.user,
            "uid": self.uid,
            "seat": self.seat,
            "type": self.type,
            "remote": self.remote,
            "active": self.active,
        }


def _value(variant: Any) -> Any:
    """jeepney returns variants as (signature, value)."""
    return variant[1] if isinstance(variant, tuple) and len(variant) == 2 else variant


class Logind:
    """A connection to logind with the few calls sso makes."""

    def __init__(self, bus: str, on_signal: Callable[[Message], None]) -> None:
        self._conn: DBusConnection = open_dbus_connection(bus or "SYSTEM")
        self._router = DBusRouter(self._conn)
        self._manager = DBusAddress(MANAGER_PATH, bus_name=LOGIN1, interface=LOGIN1 + ".Manager")
        self._signals: queue.Queue[Message] = queue.Queue(maxsize=10000)
        self._on_signal = on_signal
        self._stopping = threading.Event()
        self._filters = []
        for iface, member, extra in (
            (LOGIN1 + ".Manager", "SessionNew", {}),
            (LOGIN1 + ".Manager", "SessionRemoved", {}),
            (PROPS_IFACE, "PropertiesChanged", {"path_namespace": MANAGER_PATH + "/session"}),
        ):
            # the bus matches on the well-known sender; locally the sender is the unique name
            bus_rule = MatchRule(type="signal", sender=LOGIN1, interface=iface, member=member, **extra)
            local_rule = MatchRule(type="signal", interface=iface, member=member, **extra)
            self._filters.append(self._router.filter(local_rule, queue=self._signals))
            self._call(message_bus.AddMatch(bus_rule))
        self._thread = threading.Thread(target=self._pump, daemon=True, name="sso-logind-signals")
        self._thread.start()

    def close(self) -> None:
        """Stop the signal thread and close the connection."""
        self._stopping.set()
        for handle in self._filters:
            handle.close()
        self._router.close()
        self._conn.close()

    def _pump(self) -> None:
        while not self._stopping.is_set():
            try:
                msg = self._signals.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._on_signal(msg)
            except Exception:  # thread boundary: one bad signal must not stop session tracking
                log.exception("logind signal handler failed", extra={"event": "sso.signal_failed"})

    def _call(self, msg: Message) -> Any:
        return unwrap_msg(self._router.send_and_get_reply(msg, timeout=CALL_TIMEOUT_S))

    def _manager_call(self, method: str, signature: str | None = None, body: tuple[Any, ...] = ()) -> Any:
        return self._call(new_method_call(self._manager, method, signature, body))

    def list_sessions(self) -> list[SessionInfo]:
        """Every session logind knows, with its properties."""
        out = []
        for entry in self._manager_call("ListSessions")[0]:
            info = self.session(str(entry[4]))
            if info is not None:
                out.append(info)
        return out

    def session(self, path: str) -> SessionInfo | None:
        """Properties of the session at ``path``; None if it vanished."""
        addr = DBusAddress(path, bus_name=LOGIN1, interface=PROPS_IFACE)
        try:
            props = self._call(new_method_call(addr, "GetAll", "s", (SESSION_IFACE,)))[0]
        except (DBusErrorResponse, TimeoutError):  # removed between listing and reading
            return None
        get = {k: _value(v) for k, v in props.items()}
        user = get.get("User") or (0, "")
        seat = get.get("Seat") or ("", "")
        return SessionInfo(
            id=str(get.get("Id", path.rsplit("/", 1)[-1])),
            path=path,
            user=str(get.get("Name", "")),
            uid=int(user[0]),
            seat=str(seat[0]),
            active=bool(get.get("Active", False)),
            locked=bool(get.get("LockedHint", False)),
            type=str(get.get("Type", "")),
            remote=bool(get.get("Remote", False)),
            klass=str(get.get("Class", "")),
            timestamp_us=int(get.get("Timestamp", 0) or 0),
        )

    def lock_session(self, session_id: str) -> None:
        """Ask the session's locker to lock (logind emits ``Lock`` on the session)."""
        addr = DBusAddress(f"{MANAGER_PATH}/session/{session_id}", bus_name=LOGIN1, interface=SESSION_IFACE)
        self._call(new_method_call(addr, "Lock"))

    def unlock_session(self, session_id: str) -> None:
        """Lift the lock screen (``Manager.UnlockSession``; logind emits ``Unlock``)."""
        self._manager_call("UnlockSession", "s", (session_id,))

    def terminate_session(self, session_id: str) -> None:
        """Kill the session's processes (hard log-off)."""
        self._manager_call("TerminateSession", "s", (session_id,))

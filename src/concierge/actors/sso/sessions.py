"""SessionTracker: the current logind sessions, kept up to date from signals, and the events.

Turns SessionNew / SessionRemoved / PropertiesChanged(LockedHint) into ``session.logon``,
``session.logoff``, ``session.lock`` and ``session.unlock`` (the old agent never sent these on
Linux, so vdsm waited 30 s on every hibernation). Picks the console session: active, on seat0,
local, graphical preferred. Thread-safe. Must not import zmq or the runtime.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from jeepney import Message

from concierge.actors.sso.logind import SessionInfo

Publish = Callable[[str, dict[str, Any]], None]


class SessionSource(Protocol):
    """What the tracker reads from logind."""

    def session(self, path: str) -> SessionInfo | None:
        """Properties of one session."""
        ...


class SessionTracker:
    """Sessions by object path, plus event emission on changes."""

    def __init__(self, publish: Publish) -> None:
        self._publish = publish
        self._lock = threading.Lock()
        self._sessions: dict[str, SessionInfo] = {}

    def load(self, sessions: list[SessionInfo]) -> None:
        """Initial state (no events: nothing changed, we just started)."""
        with self._lock:
            self._sessions = {s.path: s for s in sessions}

    def on_signal(self, msg: Message, source: SessionSource) -> None:
        """Apply one logind signal; publish what changed."""
        member = msg.header.fields.get(3)  # HeaderFields.member
        path = str(msg.header.fields.get(1, ""))  # HeaderFields.path
        if member == "SessionNew":
            self._refresh(str(msg.body[1]), source, new=True)
        elif member == "SessionRemoved":
            with self._lock:
                gone = self._sessions.pop(str(msg.body[1]), None)
            if gone is not None:
                self._publish("session.logoff", gone.event_body())
        elif member == "PropertiesChanged":
            self._refresh(path, source, new=False)

    def _refresh(self, path: str, source: SessionSource, *, new: bool) -> None:
        info = source.session(path)
        if info is None:
            return
        with self._lock:
            old = self._sessions.get(path)
            self._sessions[path] = info
        if old is None:
            self._publish("session.logon", info.event_body())
            if info.locked:
                self._publish("session.lock", info.event_body())
            return
        if info.locked != old.locked:
            self._publish("session.lock" if info.locked else "session.unlock", info.event_body())

    def replace(self, sessions: list[SessionInfo]) -> None:
        """A new full listing (utmp mode): publish logon/logoff for what came and went."""
        fresh = {s.path: s for s in sessions}
        with self._lock:
            old, self._sessions = self._sessions, fresh
        for path in old.keys() - fresh.keys():
            self._publish("session.logoff", old[path].event_body())
        for path in fresh.keys() - old.keys():
            self._publish("session.logon", fresh[path].event_body())

    def sessions(self) -> list[SessionInfo]:
        """A snapshot of every known session."""
        with self._lock:
            return list(self._sessions.values())

    def by_id(self, session_id: str) -> SessionInfo | None:
        """The session with logind id ``session_id``."""
        return next((s for s in self.sessions() if s.id == session_id), None)

    def console(self) -> SessionInfo | None:
        """The session in front of the console: active, local, seat0 first, graphical first."""
        candidates = [s for s in self.sessions() if s.active and not s.remote and s.klass in ("user", "")]
        if not candidates:
            return None
        candidates.sort(key=lambda s: (s.seat != "seat0", not s.graphical, s.timestamp_us))
        return candidates[0]

    def users(self) -> list[dict[str, Any]]:
        """Logged-in users (class user), with the login time of their oldest session."""
        by_user: dict[str, dict[str, Any]] = {}
        for s in sorted(self.sessions(), key=lambda s: s.timestamp_us):
            if s.klass not in ("user", "") or not s.user:
                continue
            entry = by_user.setdefault(
                s.user,
                {"name": s.user, "uid": s.uid, "login_time": s.timestamp_us / 1e6, "sessions": []},
            )
            entry["sessions"].append(s.id)
        return list(by_user.values())

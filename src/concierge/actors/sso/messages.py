"""Public API of the sso actor (config id ``sso``). Standard library and msgspec only.

Requests (sent by the transport actor's oVirt front-end, and by the QGA front-end for users;
answered by sso; timeout 4 s unless said otherwise):

``sso.active_user`` ``{}`` -> :class:`ActiveUser`
    The user of the console session (seat0, active; graphical preferred; remote excluded).
``sso.users`` ``{}`` -> ``{"users": [UserEntry, ...]}``
    Every logged-in user with the login time of their oldest session (QGA ``guest-get-users``).
``sso.lock`` ``{}`` -> ``{"session": id | None}``
    Lock the console's graphical session (``Session.Lock``). ``session.lock`` follows when the
    locker sets ``LockedHint``. ``NOT_FOUND`` when nobody is on the console.
``sso.logoff`` ``{}`` -> ``{"session": id | None, "graceful": bool}`` (timeout 15 s)
    Log the console user off: the desktop's own logout first, logind ``TerminateSession`` after
    ``logoff_grace_s``.
``sso.login`` :class:`LoginRequest` -> ``{"action": "greeter" | "unlocked"}`` (timeout 10 s)
    Single sign-on. A locked console session of the same user is unlocked by the agent itself
    (password checked through PAM, then ``UnlockSession``); a locked session of another user
    is refused with ``FORBIDDEN``; otherwise the credentials are parked for the greeter (one-time
    token, ``org.ovirt.vdsm.Credentials.UserAuthenticated`` on the system bus). The password
    is never logged nor kept beyond a single use or ``credential_ttl_s``.

Events (published by sso, topic -> :class:`SessionEvent` body):
``session.logon``, ``session.logoff``, ``session.lock``, ``session.unlock``.
"""

from __future__ import annotations

from typing import TypedDict


class ActiveUser(TypedDict):
    """Answer of ``sso.active_user``; every member None when the console is empty."""

    name: str | None
    uid: int | None
    session: str | None
    locked: bool | None


class UserEntry(TypedDict):
    """One logged-in user for ``sso.users``."""

    name: str
    uid: int
    login_time: float
    sessions: list[str]


class LoginRequest(TypedDict):
    """Body of ``sso.login`` as vdsm sent it (``user`` or ``user@authz``)."""

    username: str
    password: str


class SessionEvent(TypedDict):
    """Body of every ``session.*`` event."""

    session: str
    user: str
    uid: int
    seat: str
    type: str
    remote: bool
    active: bool

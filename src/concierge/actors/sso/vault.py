"""CredentialVault: at most one parked SSO credential, single use, short TTL, wiped after use.

The token is 128 random bits (``secrets``), compared in constant time; the password lives in a
``bytearray`` that is zeroed on use, on replacement and on expiry, and is only ever handed out
inside :class:`concierge.logs.Secret`. Thread-safe. Standard library and concierge.logs only.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from concierge.logs import Secret


@dataclass
class _Parked:
    user: str
    password: bytearray
    token: str
    deadline: float


def _wipe(buf: bytearray) -> None:
    for i in range(len(buf)):
        buf[i] = 0


class CredentialVault:
    """Holds the latest ``login`` until a greeter trades its token for it."""

    def __init__(self, clock: Callable[[], float], ttl_s: float) -> None:
        self._clock = clock
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._parked: _Parked | None = None

    def park(self, user: str, password: Secret[str]) -> Secret[str]:
        """Store a credential (replacing and wiping any earlier one); return its one-time token."""
        token = secrets.token_urlsafe(24)
        parked = _Parked(user, bytearray(password.reveal().encode("utf-8")), token, self._clock() + self._ttl)
        with self._lock:
            if self._parked is not None:
                _wipe(self._parked.password)
            self._parked = parked
        return Secret(token)

    def take(self, token: bytes) -> tuple[str, Secret[bytes]] | None:
        """Trade ``token`` for the credential exactly once; None if wrong, used or expired."""
        with self._lock:
            parked = self._parked
            if parked is None:
                return None
            if self._clock() >= parked.deadline:
                self._discard()
                return None
            if not hmac.compare_digest(token, parked.token.encode("ascii")):
                return None
            self._parked = None
        password = bytes(parked.password)
        _wipe(parked.password)
        return parked.user, Secret(password)

    def expire(self) -> bool:
        """Drop an expired credential; True if one was dropped."""
        with self._lock:
            if self._parked is not None and self._clock() >= self._parked.deadline:
                self._discard()
                return True
        return False

    def clear(self) -> None:
        """Wipe whatever is parked (actor stop)."""
        with self._lock:
            self._discard()

    @property
    def pending(self) -> bool:
        """True while a credential waits (for tests and metrics)."""
        with self._lock:
            return self._parked is not None

    def _discard(self) -> None:
        if self._parked is not None:
            _wipe(self._parked.password)
            self._parked = None

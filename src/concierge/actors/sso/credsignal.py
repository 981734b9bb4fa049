"""Emits ``org.ovirt.vdsm.Credentials.UserAuthenticated(token)`` on the system bus.

GNOME Shell (js/gdm/oVirt.js) listens for this signal, keeps the token and starts the
``gdm-ovirtcred`` PAM conversation, answering its secret prompt with the token. The bus name
``org.ovirt.vdsm.Credentials`` is requested so a greeter filtering on it finds us; the policy
file in ``pam/`` lets root own it. The token is only useful to a uid-0 peer of the credential
socket, so anyone else reading the broadcast learns nothing usable. Thread-safe (one lock).
"""

from __future__ import annotations

import logging
import threading

from jeepney import DBusAddress, new_signal
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection

from concierge.logs import Secret

log = logging.getLogger(__name__)

BUS_NAME = "org.ovirt.vdsm.Credentials"
OBJECT_PATH = "/org/ovirt/vdsm/Credentials"
INTERFACE = "org.ovirt.vdsm.Credentials"


class CredentialSignal:
    """Owns the oVirt credentials bus name and emits the token signal."""

    def __init__(self, bus: str) -> None:
        self._conn: DBusConnection = open_dbus_connection(bus or "SYSTEM")
        self._lock = threading.Lock()
        reply = self._conn.send_and_get_reply(message_bus.RequestName(BUS_NAME, 0x4), timeout=5)
        if reply.body and reply.body[0] not in (1, 4):  # primary owner / already owner
            log.warning(
                "could not own %s (reply %s)",
                BUS_NAME,
                reply.body[0],
                extra={"event": "sso.bus_name"},
            )

    def emit(self, token: Secret[str]) -> None:
        """Broadcast the token."""
        addr = DBusAddress(OBJECT_PATH, interface=INTERFACE)
        with self._lock:
            self._conn.send(new_signal(addr, "UserAuthenticated", "s", (token.reveal(),)))

    def close(self) -> None:
        """Close the bus connection."""
        self._conn.close()

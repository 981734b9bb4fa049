"""Settings of the session gateway (``[actors.session.settings]``). msgspec only."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from concierge.actors.session.messages import HANDSHAKE_FRAME, MAX_FRAME

#: descriptors the gateway needs besides agent connections (3 per endpoint, logind, the bridge)
FD_RESERVE = 128


class GatewaySettings(msgspec.Struct, forbid_unknown_fields=True):
    """Which uids get an endpoint, how sessions are tracked, and what one user may cost us."""

    #: uids that always get an endpoint (besides logind's users and /run/user/<uid> owners)
    users: list[int] = msgspec.field(default_factory=list)
    #: create endpoints for every /run/user/<uid> directory (pam_systemd creates them at login)
    scan_run_user: bool = True
    run_user_dir: str = "/run/user"
    #: use logind on this bus ("SYSTEM" or a D-Bus address); "" disables logind
    logind_bus: str = "SYSTEM"
    #: how often logind (active session, LockedHint) and the user list are re-read
    poll_s: float = 1.0
    transport_actor: str = "transport"
    input_actor: str = "input"
    #: connections one uid may hold at once (an agent needs one; a restart briefly two)
    max_connections_per_uid: Annotated[int, Meta(ge=1, le=1024)] = 4
    #: connections of all users together; must stay 128 below the open-file limit (LimitNOFILE)
    max_connections: Annotated[int, Meta(ge=1, le=65536)] = 64
    #: seconds a new connection has to say hello and be welcomed before it is closed
    hello_timeout_s: Annotated[float, Meta(gt=0, le=300)] = 5.0
    #: largest frame a welcomed agent may send, bytes (default: a 128 MiB SPICE message + 64 KiB)
    max_frame_bytes: Annotated[int, Meta(ge=HANDSHAKE_FRAME, le=MAX_FRAME)] = MAX_FRAME
    #: bytes queued to one agent before the gateway stops reading from it (back-pressure)
    max_buffered_bytes: Annotated[int, Meta(ge=4096, le=MAX_FRAME)] = 1024 * 1024


def fd_budget_error(settings: GatewaySettings, nofile: int) -> str | None:
    """Why ``max_connections`` does not fit under the fd limit ``nofile``, or None."""
    if settings.max_connections + FD_RESERVE > nofile:
        return (
            f"max_connections {settings.max_connections} + {FD_RESERVE} reserved descriptors exceeds "
            f"the open-file limit {nofile} (raise LimitNOFILE or lower max_connections)"
        )
    return None

"""Settings of the session gateway (``[actors.session.settings]``). msgspec only."""

from __future__ import annotations

import msgspec


class GatewaySettings(msgspec.Struct, forbid_unknown_fields=True):
    """Which uids get an endpoint and how sessions are tracked."""

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

"""Settings of the sso actor (``[actors.sso.settings]``). msgspec only."""

from __future__ import annotations

import msgspec


class SsoSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Credential lifetime, the credential socket and the buses; defaults are production's."""

    #: a parked credential expires after this many seconds (the greeter asks within ~1 s)
    credential_ttl_s: float = 20.0
    #: directory of the credential socket; empty = ``<runtime_dir>/sso`` (created 0700)
    socket_dir: str = ""
    #: SO_PEERCRED uids allowed to fetch credentials (gdm-session-worker runs as root)
    allowed_peer_uids: tuple[int, ...] = (0,)
    #: socket file mode; 0600 in production (tests widen it to exercise the peer check)
    socket_mode: int = 0o600
    #: how long a credential-socket client may take to send its token
    client_timeout_s: float = 3.0
    #: PAM service used by the agent to verify a password before unlocking a session
    pam_verify_service: str = "concierge-sso-verify"
    #: D-Bus address of the system bus; empty = DBUS_SYSTEM_BUS_ADDRESS or the standard socket
    system_bus: str = ""
    #: without a system bus / logind, sessions come from this utmp file (as qemu-ga and the oVirt
    #: agent); "" = wait for logind instead (the actor stays in back-off until it appears)
    utmp_path: str = "/var/run/utmp"
    #: how often utmp is re-read in that mode (logon/logoff events are this late at most)
    utmp_poll_s: float = 2.0
    #: emit org.ovirt.vdsm.Credentials.UserAuthenticated (GNOME Shell's oVirt hook)
    emit_signal: bool = True
    #: graceful logout command run as the session user; empty list = logind Terminate only
    graceful_logoff: tuple[str, ...] = ("gnome-session-quit", "--logout", "--no-prompt")
    logoff_grace_s: float = 5.0
    #: "strip-if-local": ``user@authz`` -> ``user`` when that local account exists (OGA's rule)
    domain_policy: str = "strip-if-local"

"""The sso actor: logind sessions, lock/unlock, log-off and oVirt single sign-on (runs as root)."""

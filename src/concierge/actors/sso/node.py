"""SsoNode (config id ``sso``, root): sessions, lock, log-off and single sign-on.

Tracks logind sessions (events ``session.*``), answers ``sso.active_user`` / ``sso.users``,
locks and logs off the console session, and runs the SSO ``login``: agent-side unlock for a
locked session of the same user (PAM check, then logind UnlockSession), otherwise a parked
credential traded for a one-time token through the credential socket. "Unlock only your own
session" holds in every path: here, and in the PAM module (preset user must match).
Credentials are never logged. Must not import zmq. API: ``messages.py``.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import msgspec

from concierge.actors.sso import pamauth
from concierge.actors.sso.credsignal import CredentialSignal
from concierge.actors.sso.credsock import CredentialSocket
from concierge.actors.sso.logind import Logind, SessionInfo
from concierge.actors.sso.sessions import SessionTracker
from concierge.actors.sso.settings import SsoSettings
from concierge.actors.sso.utmpsessions import utmp_sessions
from concierge.actors.sso.vault import CredentialVault
from concierge.errors import ActorError, ConfigError, ErrorCode, UnavailableError
from concierge.logs import Secret
from concierge.runtime.node import Incoming, TimerHandle
from concierge.runtime.service import ServiceNode, handler

log = logging.getLogger(__name__)


class SsoNode(ServiceNode):
    """The sso actor process."""

    worker_threads = 3

    def on_start(self) -> None:
        """Read settings, connect to logind, open the credential socket (bridge thread)."""
        try:
            self.settings = msgspec.convert(dict(self.ctx.settings), SsoSettings)
        except msgspec.ValidationError as err:
            raise ConfigError(str(err), key="actors.sso.settings") from err
        s = self.settings
        self.vault = CredentialVault(self.ctx.clock.monotonic, s.credential_ttl_s)
        self.tracker = SessionTracker(self.ctx.publish)
        self.logind: Logind | None = None
        self.signal: CredentialSignal | None = None
        self._utmp_timer: TimerHandle | None = None
        try:
            logind = Logind(s.system_bus, lambda msg: self.tracker.on_signal(msg, logind))
            self.logind = logind
            self.tracker.load(logind.list_sessions())
            self.signal = CredentialSignal(s.system_bus) if s.emit_signal else None
        except (OSError, ConnectionError, TimeoutError) as err:
            self._close_buses()
            if not s.utmp_path:
                raise UnavailableError(f"system bus / logind unavailable: {err}") from err
            log.warning(
                "system bus / logind unavailable (%s): sessions from %s; lock, log-off and unlock disabled",
                err,
                s.utmp_path,
                extra={"event": "sso.utmp_mode"},
            )
            self.ctx.set_health("degraded", "no logind: sessions from utmp")
            self.tracker.load(utmp_sessions(s.utmp_path))
            self._poll_utmp()
        directory = Path(s.socket_dir) if s.socket_dir else self.ctx.runtime_dir / "sso"
        dir_mode = 0o700 if s.socket_mode & 0o077 == 0 else 0o711
        self.credsock = CredentialSocket(
            self.ctx,
            self.vault,
            directory,
            dir_mode=dir_mode,
            socket_mode=s.socket_mode,
            allowed_uids=s.allowed_peer_uids,
            client_timeout_s=s.client_timeout_s,
        )
        try:
            self.credsock.open()
        except (UnavailableError, OSError):
            self._close_buses()  # a refused socket dir must not leak bus connections
            raise
        self._expiry: TimerHandle | None = None
        self._schedule_expiry()

    def _poll_utmp(self) -> None:
        def tick() -> None:
            try:
                self.tracker.replace(utmp_sessions(self.settings.utmp_path))
            except Exception:  # timer boundary: a bad utmp read must not stop the polling
                log.exception("utmp read failed", extra={"event": "sso.utmp_failed"})
            self._poll_utmp()

        self._utmp_timer = self.ctx.call_later(self.settings.utmp_poll_s, tick)

    def _need_logind(self) -> Logind:
        if self.logind is None:
            raise ActorError(ErrorCode.UNAVAILABLE, "not available without logind (sessions come from utmp)")
        return self.logind

    def _schedule_expiry(self) -> None:
        def tick() -> None:
            if self.vault.expire():
                log.info("parked SSO credential expired unused", extra={"event": "sso.expired"})
            self._schedule_expiry()

        self._expiry = self.ctx.call_later(1.0, tick)

    def on_stop(self) -> None:
        """Wipe credentials, close the socket and the buses."""
        if self._expiry is not None:
            self._expiry.cancel()
        if self._utmp_timer is not None:
            self._utmp_timer.cancel()
        self.vault.clear()
        self.credsock.close()
        self._close_buses()

    def _close_buses(self) -> None:
        if self.signal is not None:
            self.signal.close()
            self.signal = None
        if self.logind is not None:
            self.logind.close()
            self.logind = None

    # --- queries -----------------------------------------------------------------------------
    @handler("sso.active_user")
    def active_user(self, msg: Incoming) -> dict[str, Any]:
        """The console user (see messages.ActiveUser)."""
        console = self.tracker.console()
        if console is None:
            return {"name": None, "uid": None, "session": None, "locked": None}
        return {
            "name": console.user,
            "uid": console.uid,
            "session": console.id,
            "locked": console.locked,
        }

    @handler("sso.users")
    def users(self, msg: Incoming) -> dict[str, Any]:
        """Every logged-in user (QGA guest-get-users when utmp is empty)."""
        return {"users": self.tracker.users()}

    # --- lock and log-off ----------------------------------------------------------------------
    def _console(self) -> SessionInfo:
        console = self.tracker.console()
        if console is None:
            raise ActorError(ErrorCode.NOT_FOUND, "nobody is logged in on the console")
        return console

    @handler("sso.lock", blocking=True)
    def lock(self, msg: Incoming) -> dict[str, Any]:
        """Lock the console's session (not every session on the machine)."""
        console = self._console()
        self._need_logind().lock_session(console.id)
        log.info("locking session %s", console.id, extra={"event": "sso.lock"})
        return {"session": console.id}

    @handler("sso.logoff", blocking=True)
    def logoff(self, msg: Incoming) -> dict[str, Any]:
        """Graceful logout through the desktop, then logind TerminateSession."""
        self._need_logind()
        console = self._console()
        graceful = self._graceful_logoff(console)
        if graceful and self._wait_gone(console.id, self.settings.logoff_grace_s):
            return {"session": console.id, "graceful": True}
        self._need_logind().terminate_session(console.id)
        log.info("terminated session %s", console.id, extra={"event": "sso.terminate"})
        return {"session": console.id, "graceful": False}

    def _graceful_logoff(self, session: SessionInfo) -> bool:
        cmd = list(self.settings.graceful_logoff)
        if not cmd or shutil.which(cmd[0]) is None or session.uid == 0:
            return False
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path=/run/user/{session.uid}/bus",
        }
        try:
            subprocess.run(
                cmd,
                user=session.uid,
                env=env,
                timeout=self.settings.logoff_grace_s,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as err:
            log.info("graceful logout unavailable: %s", err, extra={"event": "sso.graceful_failed"})
            return False
        return True

    def _wait_gone(self, session_id: str, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.tracker.by_id(session_id) is None:
                return True
            time.sleep(0.1)
        return False

    # --- single sign-on --------------------------------------------------------------------------
    def _local_name(self, username: str) -> str:
        if self.settings.domain_policy == "strip-if-local" and "@" in username:
            short = username.split("@", 1)[0]
            try:
                pwd.getpwnam(short)
            except KeyError:
                return username
            return short
        return username

    @handler("sso.login", blocking=True)
    def login(self, msg: Incoming) -> dict[str, Any]:
        """SSO: unlock the same user's locked console session, or park credentials."""
        body = msg.body if isinstance(msg.body, dict) else {}
        username, raw_password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not username or not isinstance(raw_password, str):
            raise ActorError(ErrorCode.BAD_REQUEST, "login needs username and password strings")
        password = Secret(raw_password)
        del raw_password, body
        user = self._local_name(username)
        console = self.tracker.console()
        if console is not None and console.locked:
            if console.user != user:
                self.ctx.count("sso.unlock_refused")
                log.warning(
                    "login for another user than the locked session's: refused",
                    extra={"event": "sso.unlock_refused", "session": console.id},
                )
                raise ActorError(ErrorCode.FORBIDDEN, "the locked session belongs to another user")
            ok, reason = pamauth.verify(
                self.settings.pam_verify_service, user, Secret(password.reveal().encode("utf-8"))
            )
            if not ok:
                self.ctx.count("sso.unlock_denied")
                log.warning("unlock: PAM refused (%s)", reason, extra={"event": "sso.unlock_denied"})
                raise ActorError(ErrorCode.FORBIDDEN, f"authentication failed: {reason}")
            self._need_logind().unlock_session(console.id)
            self.ctx.count("sso.unlocked")
            log.info("unlocked session %s after PAM check", console.id, extra={"event": "sso.unlocked"})
            return {"action": "unlocked"}
        token = self.vault.park(user, password)
        if self.signal is not None:
            self.signal.emit(token)
        self.ctx.count("sso.parked")
        log.info("credentials parked for the greeter", extra={"event": "sso.parked"})
        return {"action": "greeter"}

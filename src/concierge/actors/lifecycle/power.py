"""Power off / halt / reboot and suspend: logind over D-Bus when systemd runs, binaries otherwise.

logind: ``SetWallMessage`` then ``PowerOff``/``Halt``/``Reboot`` (or ``ScheduleShutdown`` with a
delay), ``Can*`` checks before ``Suspend``/``Hibernate``/``HybridSleep``. Without systemd:
``shutdown -h -P|-H|-r +MIN MESSAGE`` (qemu-ga's call), BusyBox ``poweroff -d``, pm-utils and
``/sys/power/state``. Unsupported suspend modes fail with qemu-ga's text instead of pretending
to succeed. Errors raise :class:`PowerError` with the text for the requester.
Imports jeepney, never the actor runtime; blocking, so callers run it on worker threads.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection
from jeepney.wrappers import DBusErrorResponse, unwrap_msg

from concierge.actors.guestproc import popen_guest

log = logging.getLogger(__name__)

UNSUPPORTED_SUSPEND = "the requested suspend mode is not supported by the guest"
INVALID_MODE = "mode is invalid (valid values are: halt|powerdown|reboot"

_LOGIND = DBusAddress(
    "/org/freedesktop/login1",
    bus_name="org.freedesktop.login1",
    interface="org.freedesktop.login1.Manager",
)
_SHUTDOWN_METHOD = {"powerdown": "PowerOff", "halt": "Halt", "reboot": "Reboot"}
_SCHEDULE_TYPE = {"powerdown": "poweroff", "halt": "halt", "reboot": "reboot"}
_SHUTDOWN_FLAG = {"powerdown": "-P", "halt": "-H", "reboot": "-r"}
_BUSYBOX = {"powerdown": "poweroff", "halt": "halt", "reboot": "reboot"}
_SUSPEND_METHOD = {"ram": "Suspend", "disk": "Hibernate", "hybrid": "HybridSleep"}
_PM_ARG = {"ram": "--suspend", "disk": "--hibernate", "hybrid": "--suspend-hybrid"}
_PM_BIN = {"ram": "pm-suspend", "disk": "pm-hibernate", "hybrid": "pm-suspend-hybrid"}
_SYS_STATE = {"ram": "mem", "disk": "disk"}


class PowerError(Exception):
    """A power request failed; ``str()`` is the text for the requester."""


class LogindUnreachableError(PowerError):
    """No logind on the bus (the caller may fall back to binaries)."""


class Logind:
    """Minimal blocking client of ``org.freedesktop.login1.Manager``."""

    def __init__(self, address: str = "", timeout_s: float = 10.0) -> None:
        self.address = address or "SYSTEM"
        self.timeout_s = timeout_s

    def call(self, method: str, signature: str = "", *args: Any) -> tuple[Any, ...]:
        """Call ``method`` and return the reply body; D-Bus errors raise PowerError."""
        msg = new_method_call(_LOGIND, method, signature or None, args or None)
        try:
            conn = open_dbus_connection(bus=self.address, auth_timeout=self.timeout_s)
        except (OSError, KeyError, ValueError, TimeoutError) as err:
            raise LogindUnreachableError(f"cannot reach logind: {err}") from err
        try:
            reply = conn.send_and_get_reply(msg, timeout=self.timeout_s)
            return tuple(unwrap_msg(reply))
        except DBusErrorResponse as err:
            if err.name in ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner"):
                raise LogindUnreachableError(f"logind is not running: {err.name}") from err
            raise PowerError(f"logind {method} failed: {err.name}: {_first(err.data)}") from err
        except (OSError, TimeoutError) as err:
            raise PowerError(f"logind {method} failed: {err}") from err
        finally:
            conn.close()


def _first(data: Any) -> str:
    if isinstance(data, tuple | list) and data:
        return str(data[0])
    return str(data)


class Power:
    """Carries out shutdown and suspend with the configured backend."""

    def __init__(
        self,
        *,
        backend: str = "auto",
        dbus_address: str = "",
        bin_path: str = "",
        sysfs_root: str = "/sys",
        timeout_s: float = 30.0,
    ) -> None:
        self.backend = backend
        self.logind = Logind(dbus_address, timeout_s)
        self.explicit_bus = bool(dbus_address)
        self.bin_path = bin_path or (os.environ.get("PATH", "") + ":/sbin:/usr/sbin:/bin:/usr/bin")
        self.sys_state = Path(sysfs_root) / "power" / "state"
        self.timeout_s = timeout_s

    def use_logind(self) -> bool:
        """logind when configured, or in auto mode when systemd is PID 1 (sd_booted)."""
        if self.backend == "logind":
            return True
        if self.backend == "binaries":
            return False
        return self.explicit_bus or os.path.isdir("/run/systemd/system")

    # --- shutdown -----------------------------------------------------------------------------
    def shutdown(self, mode: str, delay_s: int = 0, message: str = "") -> None:
        """Power down, halt or reboot after ``delay_s`` seconds with a wall ``message``."""
        if mode not in _SHUTDOWN_METHOD:
            raise PowerError(INVALID_MODE)
        delay_s = max(0, int(delay_s))
        if self.use_logind():
            try:
                self._logind_shutdown(mode, delay_s, message)
                return
            except LogindUnreachableError as err:
                if self.backend == "logind":
                    raise
                log.warning("%s; using binaries", err, extra={"event": "power.fallback"})
        self._binary_shutdown(mode, delay_s, message)

    def _logind_shutdown(self, mode: str, delay_s: int, message: str) -> None:
        if message:
            try:  # the wall text is a courtesy: a logind too slow or too old for it must not cost the shutdown
                self.logind.call("SetWallMessage", "sb", message, True)
            except LogindUnreachableError:
                raise
            except PowerError as err:
                log.warning("%s; shutting down without the wall message", err, extra={"event": "power.wall_failed"})
        if delay_s > 0:
            when_us = time.time_ns() // 1000 + delay_s * 1_000_000
            self.logind.call("ScheduleShutdown", "st", _SCHEDULE_TYPE[mode], when_us)
        else:
            self.logind.call(_SHUTDOWN_METHOD[mode], "b", False)
        log.info("logind %s requested (delay %d s)", mode, delay_s, extra={"event": "power.shutdown"})

    def _binary_shutdown(self, mode: str, delay_s: int, message: str) -> None:
        shutdown = self._which("shutdown")
        if shutdown is not None:
            minutes = math.ceil(delay_s / 60)
            argv = [shutdown, "-h", _SHUTDOWN_FLAG[mode], f"+{minutes}"]
            if message:
                argv.append(message)
            if self._run(argv, keep_running=True) != 0:
                raise PowerError("child process has failed to shutdown")
            return
        direct = self._which(_BUSYBOX[mode])
        if direct is None:
            raise PowerError("the helper program 'shutdown' was not found")
        if message:
            self.wall(message)
        argv = [direct] + (["-d", str(delay_s)] if delay_s else [])
        if self._run(argv, keep_running=True) != 0:
            raise PowerError("child process has failed to shutdown")

    def wall(self, message: str) -> None:
        """Best effort: tell logged-in users (used where no shutdown(8) does it for us)."""
        wall = self._which("wall")
        if wall is not None:
            self._run([wall, message])

    # --- suspend ------------------------------------------------------------------------------
    def suspend(self, mode: str) -> None:
        """Suspend to ram / disk / hybrid; raises PowerError when the guest cannot."""
        if mode not in _SUSPEND_METHOD:
            raise PowerError("unknown guest suspend mode")
        if self.use_logind():
            try:
                self._logind_suspend(mode)
                return
            except LogindUnreachableError as err:
                if self.backend == "logind":
                    raise
                log.warning("%s; using binaries", err, extra={"event": "power.fallback"})
        self._binary_suspend(mode)

    def _logind_suspend(self, mode: str) -> None:
        method = _SUSPEND_METHOD[mode]
        (answer,) = self.logind.call(f"Can{method}")
        if answer != "yes":
            raise PowerError(UNSUPPORTED_SUSPEND)
        self.logind.call(method, "b", False)
        log.info("logind %s requested", method, extra={"event": "power.suspend"})

    def _binary_suspend(self, mode: str) -> None:
        checker = self._which("pm-is-supported")
        if checker is not None and self._run([checker, _PM_ARG[mode]]) == 0:
            tool = self._which(_PM_BIN[mode])
            if tool is None:
                raise PowerError(f"the helper program '{_PM_BIN[mode]}' was not found")
            status = self._run([tool])
            if status != 0:
                raise PowerError(
                    f"the helper program '{_PM_BIN[mode]}' returned an unexpected exit status code ({status})"
                )
            return
        word = _SYS_STATE.get(mode)
        if word is None or word not in self._sys_states():
            raise PowerError(UNSUPPORTED_SUSPEND)
        try:
            self.sys_state.write_text(word)
        except OSError as err:
            text = f"suspend: cannot write to '{self.sys_state}': {err.strerror}"
            raise PowerError(text) from err

    def _sys_states(self) -> list[str]:
        try:
            return self.sys_state.read_text().split()
        except OSError:
            return []

    # --- helpers ------------------------------------------------------------------------------
    def _which(self, name: str) -> str | None:
        return shutil.which(name, path=self.bin_path)

    def _run(self, argv: list[str], *, keep_running: bool = False) -> int:
        """Exit status of ``argv`` (-1: timed out and killed).

        ``keep_running``: a shutdown helper still running at the timeout is left to finish
        (its exit is logged) and counts as accepted. Killing it was the one way a slow guest
        lost a guest-shutdown: qemu-ga waits for the helper however long it takes."""
        try:
            proc = popen_guest(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as err:
            raise PowerError(f"failed to create child process, error '{err.strerror}'") from err
        try:
            return proc.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            if keep_running:
                log.warning(
                    "%s still running after %g s; left to finish",
                    argv[0],
                    self.timeout_s,
                    extra={"event": "power.slow"},
                )
                threading.Thread(target=_reap, args=(proc,), name="power-helper", daemon=True).start()
                return 0
            proc.kill()
            proc.wait()
            return -1


def _reap(proc: subprocess.Popen[bytes]) -> None:
    status = proc.wait()
    log.info("%s exited with %d", proc.args, status, extra={"event": "power.helper_exit"})

"""Commands the host asks for run as plain processes of the guest, as they do under qemu-ga.

qemu-ga starts ``guest-exec`` children, the fsfreeze hook, ``chpasswd``, ``hwclock`` and the
shutdown binaries with its own environment (glib's ``g_spawn`` with a NULL ``envp`` when the
host passes no ``env``; ``execle(..., environ)`` for the others) and its own process attributes,
which under systemd are those of a plain system service: ``oom_score_adj`` 0, no seccomp
filter, the guest's mount namespace. Concierge's unit keeps the namespaces and seccomp out (see
``packaging/systemd/concierge.service``); what is left to undo per child is here:

- the environment: the agent's own variables (the launcher's vendored-modules entry in
  ``PYTHONPATH``, ``CONCIERGE_*``, systemd's notify/watchdog/directory variables for *our* unit)
  are removed, the rest is what systemd gave the agent, i.e. what it gives
  qemu-guest-agent.service;
- ``oom_score_adj``: the agent keeps itself alive under memory pressure (``OOMScoreAdjust=``),
  a child must not inherit that. The value is inherited at fork and cannot be set between
  ``posix_spawn``'s fork and exec, so the spawning process raises its own value to 0 around the
  spawn (under a lock: spawns are serialised, each takes microseconds) and restores it after;
  raising is always allowed and the restore stays within the minimum systemd set (the kernel
  records it when a process with CAP_SYS_RESOURCE sets the value).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from typing import Any

#: variables that describe the agent's own process or unit, never a guest's command
AGENT_ONLY_VARIABLES = frozenset(
    {
        "NOTIFY_SOCKET",
        "WATCHDOG_PID",
        "WATCHDOG_USEC",
        "MAINPID",
        "MANAGERPID",
        "SYSTEMD_EXEC_PID",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "STATE_DIRECTORY",
        "RUNTIME_DIRECTORY",
        "CACHE_DIRECTORY",
        "LOGS_DIRECTORY",
        "CONFIGURATION_DIRECTORY",
        "CREDENTIALS_DIRECTORY",
        "PIDFILE",
    }
)
#: prefix of the variables the agent sets for itself (log format, fork server switch)
AGENT_ONLY_PREFIX = "CONCIERGE_"
#: what the package's launcher (packaging/bin/concierge) prepends to PYTHONPATH
VENDOR_DIR = "/usr/lib/concierge/vendor"

OOM_SCORE_ADJ = "/proc/self/oom_score_adj"

_spawn_lock = threading.Lock()


def guest_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment qemu-ga would hand a child: ours minus the agent's own variables."""
    source = os.environ if environ is None else environ
    env = {
        key: value
        for key, value in source.items()
        if key not in AGENT_ONLY_VARIABLES and not key.startswith(AGENT_ONLY_PREFIX)
    }
    if "PYTHONPATH" in env:  # undo the launcher: a guest's Python must not import our vendored copies
        kept = [part for part in env["PYTHONPATH"].split(":") if part.rstrip("/") != VENDOR_DIR]
        if kept:
            env["PYTHONPATH"] = ":".join(kept)
        else:
            del env["PYTHONPATH"]
    return env


def _read_adj(path: str) -> int | None:
    try:
        with open(path, "rb") as handle:
            return int(handle.read().strip() or b"0")
    except (OSError, ValueError):
        return None


def _write_adj(path: str, value: int) -> bool:
    try:
        with open(path, "wb", buffering=0) as handle:
            handle.write(str(value).encode())
        return True
    except OSError:
        return False


@contextlib.contextmanager
def spawning_guest_process(adj_path: str = OOM_SCORE_ADJ) -> Iterator[None]:
    """Hold this around a fork/spawn of a host-requested command: the child starts with
    ``oom_score_adj`` 0, the default of a service, whatever the agent's own value (never raises:
    when the kernel refuses, the child inherits the agent's value)."""
    with _spawn_lock:
        saved = _read_adj(adj_path)
        changed = saved is not None and saved != 0 and _write_adj(adj_path, 0)
        try:
            yield
        finally:
            if changed and saved is not None:
                _write_adj(adj_path, saved)


def popen_guest(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen`` for a host-requested command: the guest environment unless
    ``env`` is given, ``oom_score_adj`` 0, every inherited fd closed."""
    kwargs.setdefault("env", guest_environment())
    kwargs.setdefault("close_fds", True)
    with spawning_guest_process():
        return subprocess.Popen(argv, **kwargs)


def run_guest(argv: list[str], *, timeout_s: float, input_data: bytes | None = None, **kwargs: Any) -> int:
    """Run a host-requested command to completion like ``subprocess.run``: the exit status
    (negative: killed by that signal); on timeout the child is killed, reaped and
    ``subprocess.TimeoutExpired`` raised."""
    if input_data is not None:
        kwargs["stdin"] = subprocess.PIPE
    proc = popen_guest(argv, **kwargs)
    try:
        proc.communicate(input_data, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    return proc.returncode


def posix_spawn_guest(
    executable: str,
    argv: list[str],
    environment: Mapping[str, str],
    actions: list[tuple[int, int, int]],
    reset_signals: tuple[signal.Signals, ...],
) -> int:
    """``os.posix_spawn`` of a host-requested command in its own process group (``oom_score_adj``
    0); a script without ``#!`` is run by ``/bin/sh``, like glib's (and execvp's) fallback."""
    with spawning_guest_process():
        try:
            return os.posix_spawn(
                executable,
                argv,
                environment,
                file_actions=actions,
                setpgroup=0,
                setsigdef=reset_signals,
                setsigmask=(),
            )
        except OSError as err:
            if err.errno != errno.ENOEXEC:
                raise
            return os.posix_spawn(
                "/bin/sh",
                ["/bin/sh", executable, *argv[1:]],
                environment,
                file_actions=actions,
                setpgroup=0,
                setsigdef=reset_signals,
                setsigmask=(),
            )

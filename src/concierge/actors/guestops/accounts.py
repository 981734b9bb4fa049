"""guest-set-user-password and guest-ssh-*-authorized-keys.

Passwords go to the system tool (``chpasswd``, ``-e`` when crypted) on stdin only: never in argv,
never through a shell, never logged (they travel as :class:`concierge.logs.Secret`).
SSH key files are touched only by :mod:`sshkeys_helper` running as the user.
Must not import pykka or zmq.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

from concierge.actors.guestops import qbase64
from concierge.actors.guestproc import run_guest
from concierge.errors import ActorError, ErrorCode
from concierge.logs import Secret

_HELPER_SOURCE = Path(__file__).with_name("sshkeys_helper.py").read_text(encoding="utf-8")
HELPER_TIMEOUT_S = 10.0
CHPASSWD_TIMEOUT_S = 20.0


def _bad(message: str) -> ActorError:
    return ActorError(ErrorCode.BAD_REQUEST, message)


def decode_password(password_b64: str) -> Secret[bytes]:
    """Decode and vet the password before anything runs (qemu-ga's checks, plus NUL)."""
    data = Secret(qbase64.decode(password_b64))
    if b"\n" in data.reveal() or b"\0" in data.reveal():
        # qemu-ga silently cuts at NUL (strlen); a truncated password is worse than a refusal
        raise _bad("forbidden characters in raw password")
    return data


def set_password(username: str, password: Secret[bytes], crypted: bool, tool: str) -> None:
    """Pipe ``user:password`` into ``tool`` (``chpasswd``); its exit status decides."""
    if ":" in username or "\n" in username:
        raise _bad("forbidden characters in username")
    argv = [tool, "-e"] if crypted else [tool]
    try:
        status = run_guest(
            argv,
            timeout_s=CHPASSWD_TIMEOUT_S,
            input_data=username.encode() + b":" + password.reveal() + b"\n",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as err:
        raise ActorError(ErrorCode.TIMEOUT, "child process has failed to set user password") from err
    except OSError as err:
        raise ActorError(ErrorCode.UNAVAILABLE, f"failed to create child process, error was '{err.strerror}'") from err
    if status != 0:
        raise _bad("child process has failed to set user password")


def check_keys(keys: list[str]) -> None:
    """qemu-ga's sanity check of each key (the message quotes the key, as qemu-ga's does)."""
    for key in keys:
        if key.startswith("#") or "\n" in key:
            raise _bad(f"invalid OpenSSH public key: '{key}'")


def lookup(username: str) -> pwd.struct_passwd:
    """The passwd entry, or qemu-ga's error text."""
    try:
        return pwd.getpwnam(username)
    except (KeyError, ValueError) as err:
        raise _bad(f"failed to lookup user '{username}': Success") from err


def interpreters(configured: str) -> list[str]:
    """Pythons to try for the helper: it runs as the user, who may not reach a venv's python
    (e.g. one under /root), so the system's python3 is the fallback (the helper is stdlib only)."""
    found = [configured] if configured else [sys.executable]
    found += [p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if p not in found]
    return found


def ssh_keys(username: str, op: str, keys: list[str], reset: bool = False, python: str = "") -> Any:
    """Run one authorized_keys operation as ``username`` in the helper child."""
    entry = lookup(username)
    check_keys(keys)
    request = {"op": op, "home": entry.pw_dir, "keys": keys, "reset": reset}
    switch: dict[str, Any] = {}
    if os.geteuid() != entry.pw_uid:
        if os.geteuid() != 0:
            raise ActorError(ErrorCode.FORBIDDEN, f"cannot act as user '{username}' without root privileges")
        switch = {
            "user": entry.pw_uid,
            "group": entry.pw_gid,
            "extra_groups": os.getgrouplist(entry.pw_name, entry.pw_gid),
        }
    proc = None
    failure = ""
    for interpreter in interpreters(python):
        try:
            proc = subprocess.run(
                [interpreter, "-I", "-S", "-c", _HELPER_SOURCE],
                input=json.dumps(request).encode(),
                capture_output=True,
                close_fds=True,
                timeout=HELPER_TIMEOUT_S,
                check=False,
                cwd="/",
                env={"LC_ALL": "C.UTF-8"},
                umask=0o077,
                **switch,
            )
            break
        except subprocess.TimeoutExpired as err:
            raise ActorError(ErrorCode.TIMEOUT, "authorized_keys helper timed out") from err
        except OSError as err:  # not executable by this user: try the next interpreter
            failure = f"{interpreter}: {err.strerror}"
    if proc is None:
        raise ActorError(ErrorCode.UNAVAILABLE, f"cannot start helper ({failure})")
    try:
        answer = json.loads(proc.stdout)
    except ValueError as err:
        raise ActorError(ErrorCode.INTERNAL, f"authorized_keys helper failed (exit {proc.returncode})") from err
    if "error" in answer:
        raise _bad(str(answer["error"]))
    return answer["ok"]

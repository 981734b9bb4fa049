"""PAM module (for libpam-python's pam_python.so) trading an SSO token for PAM_USER/PAM_AUTHTOK.

Loaded into the greeter's PAM stack (``gdm-ovirtcred``): it prompts once with a hidden
"Token?" question (GNOME Shell answers any secret question on that service with the token it
got from the ``UserAuthenticated`` signal), checks that the credential socket's server is root
(SO_PEERCRED), sends the token, and sets PAM_USER and PAM_AUTHTOK from the versioned reply.
The following module (pam_unix ``use_first_pass`` ...) does the real password check.
If PAM already has a user (the lock screen of a logged-in user) and it differs, it fails:
nobody unlocks another user's session with their credentials.

Arguments: ``socket=PATH`` (default /run/concierge/sso/cred.sock), ``server_uid=N`` (default 0),
``timeout=SECONDS`` (default 3). Standard library only: it runs inside gdm-session-worker's
embedded interpreter, not in Concierge's environment. Never logs the token or the password.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

MAGIC = b"CCSSO"
VERSION = 1
DEFAULT_SOCKET = "/run/concierge/sso/cred.sock"


def _options(argv: list[str]) -> dict[str, str]:
    opts = {}
    for arg in argv[1:]:
        key, _, value = arg.partition("=")
        opts[key] = value
    return opts


def _recv_exact(sock: socket.socket, n: int, buf: bytearray) -> bytes:
    while len(buf) < n:
        chunk = sock.recv(max(4096, n - len(buf)))
        if not chunk:
            raise ConnectionError("credential socket closed early")
        buf += chunk
    out = bytes(buf[:n])
    del buf[:n]
    return out


def fetch(path: str, token: bytes, server_uid: int, timeout: float) -> tuple[int, str, bytearray]:
    """Exchange ``token`` on the credential socket; (status, user, password)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        if struct.unpack("3i", creds)[1] != server_uid:
            raise PermissionError("credential socket server is not the expected uid")
        sock.sendall(MAGIC + struct.pack(">BI", VERSION, len(token)) + token)
        buf = bytearray()
        head = _recv_exact(sock, len(MAGIC) + 2, buf)
        if head[: len(MAGIC)] != MAGIC or head[len(MAGIC)] != VERSION:
            raise ValueError("unsupported credential reply")
        status = head[len(MAGIC) + 1]
        (ulen,) = struct.unpack(">I", _recv_exact(sock, 4, buf))
        user = _recv_exact(sock, ulen, buf).decode("utf-8")
        (plen,) = struct.unpack(">I", _recv_exact(sock, 4, buf))
        password = bytearray(_recv_exact(sock, plen, buf))
        return status, user, password


def pam_sm_authenticate(pamh: Any, flags: int, argv: list[str]) -> int:
    """Prompt for the token, fetch the credentials, set PAM_USER and PAM_AUTHTOK."""
    opts = _options(argv)
    try:
        preset = pamh.user
    except pamh.exception:
        preset = None
    try:
        answer = pamh.conversation(pamh.Message(pamh.PAM_PROMPT_ECHO_OFF, "Token?"))
    except pamh.exception:
        return int(pamh.PAM_CONV_ERR)
    token = (answer.resp or "").encode("utf-8")
    if not token:
        return int(pamh.PAM_CRED_UNAVAIL)
    try:
        status, user, password = fetch(
            opts.get("socket", DEFAULT_SOCKET),
            token,
            int(opts.get("server_uid", "0")),
            float(opts.get("timeout", "3")),
        )
    except (OSError, ValueError, PermissionError):
        return int(pamh.PAM_AUTHINFO_UNAVAIL)
    try:
        if status != 0 or not user:
            return int(pamh.PAM_CRED_UNAVAIL)
        if preset and preset != user:
            return int(pamh.PAM_CRED_UNAVAIL)
        pamh.user = user
        pamh.authtok = password.decode("utf-8")
        return int(pamh.PAM_SUCCESS)
    finally:
        for i in range(len(password)):
            password[i] = 0


def pam_sm_setcred(pamh: Any, flags: int, argv: list[str]) -> int:
    """Nothing to establish: the next module owns the credentials."""
    return int(pamh.PAM_SUCCESS)

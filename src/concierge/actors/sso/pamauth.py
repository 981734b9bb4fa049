"""Password verification through libpam (ctypes), for the agent-side unlock of a locked session.

``verify(service, user, password)`` runs pam_authenticate + pam_acct_mgmt on ``service`` with a
conversation that answers hidden prompts with the password and nothing else. Blocking: call
from a worker thread. The password is copied into C memory only for the conversation reply
(PAM frees it) and is never logged. Standard library and concierge.logs only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from ctypes import CFUNCTYPE, POINTER, Structure, c_char_p, c_int, c_void_p, cast, pointer, sizeof

from concierge.logs import Secret

log = logging.getLogger(__name__)

PAM_SUCCESS = 0
PAM_PROMPT_ECHO_OFF = 1
PAM_PROMPT_ECHO_ON = 2
PAM_BUF_ERR = 5
PAM_CONV_ERR = 19


class _PamMessage(Structure):
    _fields_ = [("msg_style", c_int), ("msg", c_char_p)]


class _PamResponse(Structure):
    _fields_ = [("resp", c_void_p), ("resp_retcode", c_int)]


_CONV_FUNC = CFUNCTYPE(c_int, c_int, POINTER(POINTER(_PamMessage)), POINTER(POINTER(_PamResponse)), c_void_p)


class _PamConv(Structure):
    _fields_ = [("conv", _CONV_FUNC), ("appdata_ptr", c_void_p)]


def _libs() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    # Load libpam into the global namespace and resolve through it, so an LD_PRELOADed
    # interposer (pam_wrapper in tests) wins exactly as it would for a normally linked program.
    ctypes.CDLL(ctypes.util.find_library("pam") or "libpam.so.0", mode=ctypes.RTLD_GLOBAL)
    libpam = ctypes.CDLL(None)
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.calloc.restype = c_void_p
    libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    libc.strdup.restype = c_void_p
    libc.strdup.argtypes = [c_char_p]
    libpam.pam_start.argtypes = [c_char_p, c_char_p, POINTER(_PamConv), POINTER(c_void_p)]
    libpam.pam_authenticate.argtypes = [c_void_p, c_int]
    libpam.pam_acct_mgmt.argtypes = [c_void_p, c_int]
    libpam.pam_end.argtypes = [c_void_p, c_int]
    libpam.pam_strerror.argtypes = [c_void_p, c_int]
    libpam.pam_strerror.restype = c_char_p
    return libpam, libc


def verify(service: str, user: str, password: Secret[bytes]) -> tuple[bool, str]:
    """Authenticate ``user`` with ``password`` through PAM ``service``; (ok, PAM's reason)."""
    libpam, libc = _libs()
    secret = password.reveal()

    def converse(
        n: int,
        messages: ctypes._Pointer[ctypes._Pointer[_PamMessage]],
        responses: ctypes._Pointer[ctypes._Pointer[_PamResponse]],
        _data: int | None,
    ) -> int:
        if not responses:  # informational messages sent without a reply slot
            return PAM_SUCCESS
        block = libc.calloc(n, sizeof(_PamResponse))
        if not block:
            return PAM_BUF_ERR
        replies = cast(block, POINTER(_PamResponse))
        for i in range(n):
            if messages[i].contents.msg_style == PAM_PROMPT_ECHO_OFF:
                replies[i].resp = libc.strdup(secret)
        responses[0] = replies
        return PAM_SUCCESS

    conv = _PamConv(_CONV_FUNC(converse), None)
    handle = c_void_p()
    rc = libpam.pam_start(service.encode(), user.encode(), pointer(conv), ctypes.byref(handle))
    if rc != PAM_SUCCESS:
        return False, f"pam_start failed ({rc})"
    try:
        rc = libpam.pam_authenticate(handle, 0)
        if rc == PAM_SUCCESS:
            rc = libpam.pam_acct_mgmt(handle, 0)
        reason = (libpam.pam_strerror(handle, rc) or b"").decode(errors="replace")
        return rc == PAM_SUCCESS, reason
    finally:
        libpam.pam_end(handle, rc)

"""Test PAM module (pam_python): accepts iff PAM_USER/PAM_AUTHTOK match a line of ``passdb=FILE``.

Stands in for ``pam_unix use_first_pass`` (pam_matrix ignores a preset PAM_AUTHTOK and prompts
again), so the greeter test proves the token exchange set both items. System python, stdlib only.
"""

from __future__ import annotations

from typing import Any


def pam_sm_authenticate(pamh: Any, flags: int, argv: list[str]) -> int:
    """Compare the items set by the module before us with the password database."""
    opts = dict(arg.partition("=")[::2] for arg in argv[1:])
    user, token = pamh.user, pamh.authtok
    if not user or token is None:
        return pamh.PAM_AUTH_ERR
    with open(opts["passdb"], encoding="utf-8") as fh:
        for line in fh:
            name, _, password = line.rstrip("\n").partition(":")
            if name == user and password == token:
                return pamh.PAM_SUCCESS
    return pamh.PAM_AUTH_ERR


def pam_sm_setcred(pamh: Any, flags: int, argv: list[str]) -> int:
    """Nothing to do."""
    return pamh.PAM_SUCCESS

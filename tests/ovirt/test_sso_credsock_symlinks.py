"""Credential socket: a real local user swapping the socket directory's name for a symlink.

``socket_dir`` may be configured inside a directory a user can write. Root must then never
chmod, bind in or unlink from whatever the name points to at the moment: every step goes
through the descriptor of the directory it created and checked. The attacker is a useradd
account under setpriv, swapping the name as fast as it can while root opens and closes the
socket a few hundred times; the victim directory must come out untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from concierge.actors.sso import credsock
from concierge.actors.sso.credsock import CredentialSocket
from concierge.actors.sso.vault import CredentialVault
from concierge.errors import UnavailableError
from concierge.testing.context import FakeContext
from concierge.testing.localuser import as_user, local_user

ROUNDS = 300
SWAPPER = """
import os, sys, time
parent, target, stop = sys.argv[1:]
name, n = os.path.join(parent, "sso"), 0
while not os.path.exists(stop):
    n += 1
    for step in (lambda: os.unlink(name), lambda: time.sleep(0.0003 * (n % 4)),
                 lambda: os.rename(name, os.path.join(parent, f"old-{n}")), lambda: os.symlink(target, name),
                 lambda: time.sleep(0.0002 * (n % 3))):
        try:
            step()
        except OSError:
            pass
"""


@pytest.fixture
def user() -> Iterator[tuple[int, int]]:
    with local_user("ccsso") as (_, uid, gid):
        yield uid, gid


def test_sso_socket_dir_swapped_for_symlink_is_never_followed(user: tuple[int, int]) -> None:
    uid, gid = user
    base = Path(tempfile.mkdtemp(prefix="cc-sso-link-"))
    base.chmod(0o755)
    attic, victim, stop = base / "attic", base / "victim", base / "stop"
    attic.mkdir(mode=0o755)
    os.chown(attic, uid, gid)  # the admin put socket_dir under a user's directory
    victim.mkdir(mode=0o755)
    ctx = FakeContext("sso", {})
    vault = CredentialVault(time.monotonic, 20.0)
    argv = as_user(uid, gid, "/usr/bin/python3", "-c", SWAPPER)
    attacker = subprocess.Popen([*argv, str(attic), str(victim), str(stop)])
    opened = refused = 0
    try:
        deadline = time.monotonic() + 10
        while not (attic / "sso").is_symlink() and time.monotonic() < deadline:
            time.sleep(0.001)  # the attacker is running
        while opened + refused < ROUNDS or (0 in (opened, refused) and opened + refused < 20 * ROUNDS):
            sock = CredentialSocket(
                ctx, vault, attic / "sso", dir_mode=0o700, socket_mode=0o600, allowed_uids=(0,), client_timeout_s=1.0
            )
            try:
                sock.open()
            except (UnavailableError, OSError):
                refused += 1
                continue
            opened += 1
            sock.close()
    finally:
        stop.touch()
        attacker.wait(30)
        ctx.close()
    try:
        assert list(victim.iterdir()) == [], "root created the socket in the symlink's target"
        st = victim.stat()
        assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o755), "root chmodded the symlink's target"
        assert opened > 0 and refused > 0, (opened, refused)  # both outcomes: the race was run
        leftovers = [p for p in attic.iterdir() if (p / credsock.SOCKET_NAME).exists()]
        assert leftovers == [], "a closed socket left its file behind"
    finally:
        shutil.rmtree(base, ignore_errors=True)

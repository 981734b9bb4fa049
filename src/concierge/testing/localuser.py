"""Real throwaway local accounts for tests of what an unprivileged user can do to the agent.

The attacks on root's local boundaries (symlink swaps, hostile frames, resource floods) run as
a real account made with ``useradd`` and entered with ``setpriv``, never as a mock. Test support
only; needs root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import uuid
from collections.abc import Iterator

from concierge.testing.peers import require, require_binary


@contextlib.contextmanager
def local_user(prefix: str = "cctest") -> Iterator[tuple[str, int, int]]:
    """A new account without a home or shell, removed afterwards; yields (name, uid, gid)."""
    require(os.geteuid() == 0, "creating users needs root")
    require_binary("useradd", "passwd")
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name], check=True)
    try:
        entry = pwd.getpwnam(name)
        yield name, entry.pw_uid, entry.pw_gid
    finally:
        subprocess.run(["userdel", "-f", name], check=False, capture_output=True)


def as_user(uid: int, gid: int, *argv: str) -> list[str]:
    """``argv`` run as ``uid``/``gid`` with no supplementary groups (setpriv, util-linux)."""
    return [require_binary("setpriv", "util-linux"), f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *argv]

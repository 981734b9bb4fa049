"""Optional real peers (qemu-ga, Xvfb, pam_wrapper, dbusmock ...): skip on a laptop, fail in CI.

``.ci/run`` exports ``CONCIERGE_REQUIRE_PEERS=1``; then a missing peer is a test failure, so a
green CI run can never hide a skipped boundary test.
"""

from __future__ import annotations

import os
import shutil

import pytest


def peers_required() -> bool:
    """True when missing peers must fail instead of skip."""
    return os.environ.get("CONCIERGE_REQUIRE_PEERS", "") not in ("", "0")


def require(available: bool, reason: str) -> None:
    """Skip (or fail under CONCIERGE_REQUIRE_PEERS=1) when a peer is not available."""
    if available:
        return
    if peers_required():
        pytest.fail(f"required peer missing: {reason}")
    pytest.skip(reason)


def require_binary(name: str, package: str) -> str:
    """Return the path of ``name`` or skip/fail naming the Debian package that provides it."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)),
        None,
    )
    require(path is not None, f"{name} not found (apt install {package})")
    assert path is not None
    return path

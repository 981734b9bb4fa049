"""Optional real peers (qemu-ga, Xvfb, pam_wrapper, dbusmock ...): skip on a laptop, fail in CI.

``.ci/run`` exports ``CONCIERGE_REQUIRE_PEERS=1``; then a missing peer is a test failure, so a
green CI run can never hide a skipped boundary test. Root, the shared reference data, the Python
test peers and every Debian package of ``tools/ci/apt-*.txt`` count as peers CI provides.

The only skips CI tolerates are the ones in :data:`ALLOWED_SKIPS`: things no package install can
give a machine (a kernel built without a feature). Each is named there with its reason, and the
skip message says it is allow-listed, so a reader of CI's summary sees exactly why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from typing import NoReturn

import pytest

#: key -> why CI may still skip it; a key not listed here fails under CONCIERGE_REQUIRE_PEERS=1
ALLOWED_SKIPS: dict[str, str] = {
    "vsock": "the kernel has no AF_VSOCK transport (vsock_loopback / vhost_vsock) and cannot load one",
}

#: where the product looks for administration tools: the full sbin paths first, as root's PATH
_TOOL_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


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


def require_root(why: str) -> None:
    """Root-only tests: CI runs as root, so there this never skips."""
    require(os.geteuid() == 0, f"needs root: {why}")


def skip_allowed(key: str, available: bool, reason: str) -> None:
    """Skip even under CONCIERGE_REQUIRE_PEERS=1, but only for a key of :data:`ALLOWED_SKIPS`."""
    if available:
        return
    if key not in ALLOWED_SKIPS:
        raise KeyError(f"{key!r} is not an allowed skip; add it to ALLOWED_SKIPS with its reason")
    pytest.skip(f"{reason} [allow-listed: {ALLOWED_SKIPS[key]}]")


def find_tool(name: str) -> str | None:
    """``name`` in the sbin/bin directories (as the product finds it), else on $PATH."""
    for directory in _TOOL_DIRS:
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def require_binary(name: str, package: str) -> str:
    """Return the full path of ``name`` or skip/fail naming the Debian package that provides it."""
    path = find_tool(name)
    require(path is not None, f"{name} not found (apt install {package})")
    assert path is not None
    return path


def run_tool(argv: list[str], what: str) -> str:
    """Run an administration tool the test needs; a failure fails the test with its stderr."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        _tool_failed(what, argv, str(err))
    if done.returncode != 0:
        _tool_failed(what, argv, done.stderr.strip() or f"exit status {done.returncode}")
    return done.stdout


def _tool_failed(what: str, argv: list[str], detail: str) -> NoReturn:
    pytest.fail(f"{what} failed ({' '.join(argv)}): {detail}", pytrace=False)


def load_kernel_module(name: str) -> bool:
    """Try ``modprobe name`` (root only); True if it ran successfully. Never raises."""
    modprobe = find_tool("modprobe")
    if modprobe is None or os.geteuid() != 0:
        return False
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        return subprocess.run([modprobe, "-q", name], capture_output=True, check=False, timeout=30).returncode == 0
    return False

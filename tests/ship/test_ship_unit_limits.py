"""The systemd units carry the resource limits and hardening of docs/security.md, and nothing
that would change what a host (system unit) or the session agent (user unit) may do."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
from pathlib import Path

from concierge.testing.peers import require_binary

PKG = Path(__file__).resolve().parents[2] / "packaging" / "systemd"
_SIZE = re.compile(r"^(\d+)([KMG])$")


def _service(name: str) -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(PKG / name)
    return dict(parser["Service"])


def _bytes(value: str) -> int:
    match = _SIZE.match(value)
    assert match, f"{value!r} is not a size with a K/M/G suffix"
    return int(match.group(1)) << {"K": 10, "M": 20, "G": 30}[match.group(2)]


def test_system_unit_limits_shed_rather_than_kill() -> None:
    svc = _service("concierge.service")
    assert 256 <= int(svc["TasksMax"]) <= 4096
    assert int(svc["LimitNOFILE"]) >= 4096  # above 1024: one user's sockets cannot starve others
    # throttling above MemoryHigh, never a cgroup kill of the agent
    assert _bytes(svc["MemoryHigh"]) >= 256 << 20
    assert "MemoryMax" not in svc and "MemoryLimit" not in svc
    assert int(svc["OOMScoreAdjust"]) < 0


def test_user_unit_hardening_keeps_what_the_session_agent_needs() -> None:
    svc = _service("concierge-session.service")
    for key in (
        "NoNewPrivileges",
        "RestrictSUIDSGID",
        "LockPersonality",
        "RestrictRealtime",
        "RestrictNamespaces",
    ):
        assert svc.get(key) == "yes", key
    assert svc["SystemCallArchitectures"] == "native"
    families = set(svc["RestrictAddressFamilies"].split())
    assert "AF_UNIX" in families  # X11, Wayland, D-Bus and the gateway are unix sockets
    assert {"AF_INET", "AF_INET6"} <= families  # DISPLAY=host:0 is X11 over TCP
    assert int(svc["TasksMax"]) >= 64 and _bytes(svc["MemoryHigh"]) >= 128 << 20
    # options that need a user namespace or hide the desktop's sockets and the download dir
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateUsers", "UMask", "MemoryMax"):
        assert key not in svc, key


def test_units_verify_with_systemd(tmp_path: Path) -> None:
    tool = require_binary("systemd-analyze", "systemd")
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    for name, extra in (("concierge.service", []), ("concierge-session.service", ["--user"])):
        done = subprocess.run(
            [tool, *extra, "verify", str(PKG / name)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
            check=False,
        )
        lines = [
            line
            for line in (done.stdout + done.stderr).splitlines()
            if line.strip()
            and not re.search(
                r"is not executable: No such file|Command 'man |Failed to lookup RuntimeDirectory|"
                r"Failed to initialize manager",
                line,
            )
        ]
        assert lines == [], (name, lines)

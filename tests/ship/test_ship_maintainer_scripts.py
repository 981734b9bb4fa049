"""The package's maintainer scripts (issue 15 item 4): `dpkg -r concierge` must stop the agent
and release its ports; an upgrade must not; purge removes the state.

There is no systemd in the test machine, so the scripts run in a private mount namespace whose
/run holds `/run/systemd/system` (what they test for), with `deb-systemd-invoke`, `systemctl`
and `udevadm` replaced by programs that record their arguments. What systemd then does with
those calls is checked in the real VM (tools/vm/checks/package_checks.py: check_package_lifecycle).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from concierge.testing.peers import require

pytestmark = pytest.mark.peer

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ("deb-systemd-invoke", "systemctl", "udevadm", "deb-systemd-helper")


def run_script(script: str, action: str, tmp_path: Path, *extra: str) -> list[str]:
    """Run ``debian/<script> <action>`` as dpkg would; returns the recorded tool calls."""
    unshare = shutil.which("unshare")
    require(unshare is not None and os.geteuid() == 0, "needs root and unshare (util-linux)")
    assert unshare is not None
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir(exist_ok=True)
    for tool in RECORDED:
        stub = bin_dir / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n')
        stub.chmod(0o755)
    log.write_text("")
    inner = (
        "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && "
        f'PATH={bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin sh -e {ROOT / "debian" / script} "$@"'
    )
    result = subprocess.run(
        [unshare, "-m", "--propagation", "private", "sh", "-c", inner, "sh", action, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines()


def test_remove_stops_the_agent(tmp_path: Path) -> None:
    assert "deb-systemd-invoke stop concierge.service" in run_script("prerm", "remove", tmp_path)


def test_upgrade_keeps_it_running(tmp_path: Path) -> None:
    calls = run_script("prerm", "upgrade", tmp_path, "0.2.0")
    assert not [c for c in calls if "stop" in c], calls


def test_postrm_remove_releases_udev_and_replays_ports(tmp_path: Path) -> None:
    calls = run_script("postrm", "remove", tmp_path)
    assert "udevadm control --reload-rules" in calls
    assert "udevadm trigger --subsystem-match=virtio-ports --action=add" in calls

"""Mount scenarios run in a private mount namespace: a hung FUSE mount costs one timeout
while other requests answer; a new loop-mounted ext4 is visible at the next request and
matches qemu-ga's answer in the same namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from concierge.testing.peers import require, require_binary

pytestmark = pytest.mark.peer

_SCRIPT = Path(__file__).with_name("monitor_ns_script.py")
_SRC = Path(__file__).resolve().parents[2] / "src"


def run_in_namespace(*args: str) -> dict[str, Any]:
    unshare = shutil.which("unshare")
    require(unshare is not None and os.geteuid() == 0, "needs root and unshare (util-linux)")
    assert unshare is not None
    env = dict(os.environ, PYTHONPATH=f"{_SRC}:{_SCRIPT.parent}")
    proc = subprocess.run(
        [unshare, "-m", "--propagation", "private", sys.executable, str(_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in result, result
    return result


def test_hung_fuse_mount_costs_one_timeout(tmp_path: Path) -> None:
    require(os.path.exists("/dev/fuse"), "/dev/fuse missing (kernel without FUSE)")
    result = run_in_namespace("fuse-hang", str(tmp_path))
    mnt = result["mountpoint"]
    # other requests were answered while the first filesystems request was still stuck
    assert result["first_pending_after_others"] is True
    assert all(result["others_ok_while_stuck"].values()), result["others_ok_while_stuck"]
    assert result["first_timed_out"] == [mnt]
    assert result["first_seconds"] >= 1.0  # it waited for its deadline (1.5 s) ...
    assert result["health_after_first"][0] == "degraded"
    # ... but the second request skips the stuck mount instead of waiting again
    assert result["second_timed_out"] == [mnt]
    assert result["second_seconds"] < 1.0
    # qemu-ga's scope never lists FUSE mounts
    assert mnt not in result["block_scope_mountpoints"]
    # once the mount answers again (here: ENOTCONN after abort) it is probed normally
    assert result["third_timed_out"] == []
    assert result["third_has_mount"] is True


def test_loop_mount_is_visible_at_next_request_and_matches_qemu_ga(tmp_path: Path) -> None:
    require_binary("mkfs.ext4", "e2fsprogs")
    qga = require_binary("qemu-ga", "qemu-guest-agent")
    result = run_in_namespace("loop-mount", str(tmp_path), qga)
    mnt = result["mountpoint"]
    assert mnt not in result["before"]
    new = [f for f in result["after"] if f["mountpoint"] == mnt]
    assert len(new) == 1
    assert new[0]["type"] == "ext4"
    assert new[0]["name"].startswith("loop")
    assert new[0]["disks"] == []
    assert new[0]["total_bytes"] > 0
    ours, theirs = result["ours"], result["qga"]
    assert [f["mountpoint"] for f in ours] == [f["mountpoint"] for f in theirs]
    for a, b in zip(ours, theirs, strict=True):
        a.pop("total-bytes-privileged", None)
        assert list(a) == list(b)
        if a["mountpoint"] == mnt:
            assert a == b
    assert mnt not in result["after_umount"]
    # guest-get-disks saw the loop device appear (cache invalidated by the uevent) ...
    loop_dev = "/dev/" + new[0]["name"]
    assert loop_dev in [d["name"] for d in result["ours_disks"]]
    assert json.dumps(result["ours_disks"]) == json.dumps(result["qga_disks"])
    # ... and go away once the loop device was detached
    assert loop_dev not in result["disks_after_umount"]


def test_agent_own_bind_mounts_are_never_listed(tmp_path: Path) -> None:
    """systemd's StateDirectory= bind mount (here: a configured path and $STATE_DIRECTORY)
    appeared in guest-get-fsinfo and oVirt's disks-usage; qemu-ga never lists it."""
    require_binary("mkfs.ext4", "e2fsprogs")
    result = run_in_namespace("agent-mounts", str(tmp_path))
    for scope in ("block", "all"):
        assert result["disk"] in result[scope], result
        for hidden in result["hidden"]:
            assert hidden not in result[scope], (scope, result)

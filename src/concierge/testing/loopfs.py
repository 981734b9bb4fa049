"""Loop-mounted filesystems that a test creates and owns (for freeze, trim and fsinfo tests).

Only filesystems made here are ever frozen; cleanup always thaws, unmounts, detaches the loop
device and removes the image, even when the test failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from concierge.testing.peers import require, require_binary, run_tool

FITHAW = 0xC0045878
SIZES_MB = {"ext4": 64, "xfs": 320}  # xfsprogs >= 5.19 refuses filesystems below 300 MB


def can_loop_mount() -> bool:
    """Root and a loop-control device are needed to create test filesystems."""
    return os.geteuid() == 0 and os.path.exists("/dev/loop-control")


def _thaw_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            for _ in range(4):
                fcntl.ioctl(fd, FITHAW, 0)
        except OSError:
            pass
        finally:
            os.close(fd)


@contextlib.contextmanager
def loop_fs(fstype: str) -> Iterator[Path]:
    """A freshly made ``fstype`` filesystem on a loop device, mounted in a private tmp dir."""
    require(can_loop_mount(), "needs root and /dev/loop-control for loop-mounted filesystems")
    mkfs = require_binary(f"mkfs.{fstype}", "xfsprogs" if fstype == "xfs" else "e2fsprogs")
    losetup = require_binary("losetup", "util-linux")
    mount = require_binary("mount", "mount")
    umount = require_binary("umount", "mount")
    base = Path(tempfile.mkdtemp(prefix=f"cc-loopfs-{fstype}-"))
    image, mnt = base / "fs.img", base / "mnt"
    mnt.mkdir()
    device = ""
    mounted = False
    try:
        with open(image, "wb") as fh:
            fh.truncate(SIZES_MB[fstype] * 1024 * 1024)
        quiet = ["-q", "-F"] if fstype == "ext4" else ["-q", "-f"]
        run_tool([mkfs, *quiet, str(image)], f"mkfs.{fstype}")
        device = run_tool([losetup, "--find", "--show", str(image)], "attaching a loop device").strip()
        run_tool([mount, "-t", fstype, device, str(mnt)], f"mounting the {fstype} image")
        mounted = True
        yield mnt
    finally:
        if mounted:
            _thaw_quietly(mnt)
            unmounted = subprocess.run([umount, str(mnt)], capture_output=True, check=False)
            if unmounted.returncode != 0:
                subprocess.run([umount, "-l", str(mnt)], capture_output=True, check=False)
        if device:
            subprocess.run([losetup, "-d", device], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)

"""Real X servers for the SPICE end-to-end tests: Xvfb (one output), Xorg + dummy (16 outputs)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from concierge.testing.peers import require, require_binary

#: Xorg + dummy driver: 16 outputs, resizable up to 4096x2560 (RandR tests and benchmarks)
XORG_DUMMY_CONF = """
Section "ServerFlags"
    Option "DontVTSwitch" "true"
    Option "AllowMouseOpenFail" "true"
    Option "PciForceNone" "true"
    Option "AutoEnableDevices" "false"
    Option "AutoAddDevices" "false"
EndSection
Section "Device"
    Identifier "dummy_videocard"
    Driver     "dummy"
    VideoRam   131072
EndSection
Section "Monitor"
    Identifier  "dummy_monitor"
    HorizSync   5.0 - 1000.0
    VertRefresh 5.0 - 200.0
    Modeline "1280x800_60.00"    83.50  1280 1352 1480 1680   800  803  809  831 -hsync +vsync
    Modeline "1024x768_60.00"    63.50  1024 1072 1176 1328   768  771  775  798 -hsync +vsync
EndSection
Section "Screen"
    Identifier   "dummy_screen"
    Device       "dummy_videocard"
    Monitor      "dummy_monitor"
    DefaultDepth 24
    SubSection "Display"
        Depth 24
        Modes "1280x800_60.00" "1024x768_60.00"
        Virtual 4096 2560
    EndSubSection
EndSection
"""


@contextmanager
def _xserver(argv: list[str]) -> Iterator[str]:
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [*argv, "-displayfd", str(write_fd)],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        require(bool(number), f"{argv[0]} did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def xvfb(width: int = 1280, height: int = 800) -> Iterator[str]:
    """Xvfb with one screen of ``width``x``height``; yields the DISPLAY name."""
    binary = require_binary("Xvfb", "xvfb")
    with _xserver([binary, "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp", "-noreset"]) as name:
        yield name


@contextmanager
def xorg_dummy(tmp: Path) -> Iterator[str]:
    """Xorg with the dummy driver (DUMMY0..15, DUMMY0 at 1280x800); yields the DISPLAY name."""
    binary = require_binary("Xorg", "xserver-xorg-core xserver-xorg-video-dummy")
    require(
        Path("/usr/lib/xorg/modules/drivers/dummy_drv.so").exists(),
        "apt install xserver-xorg-video-dummy",
    )
    conf = tmp / "xorg-dummy.conf"
    conf.write_text(XORG_DUMMY_CONF)
    argv = [binary, "-noreset", "+extension", "RANDR", "-nolisten", "tcp", "-config", str(conf)]
    with _xserver([*argv, "-logfile", str(tmp / "xorg.log")]) as name:
        yield name


def xrandr(display: str, *args: str) -> None:
    """Run xrandr against ``display`` (fails the test on error)."""
    binary = require_binary("xrandr", "x11-xserver-utils")
    subprocess.run([binary, "-d", display, *args], check=True, capture_output=True, timeout=20)

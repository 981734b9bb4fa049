"""Fixtures of the session-actor tests: real X servers (Xvfb, Xorg + dummy), headless sway."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from session_helpers import (
    XORG_DUMMY_CONF,
    RecordingContext,
    _free_display,
    _start_x,
    _stop,
    wait_until,
)

from concierge.testing.context import FakeContext
from concierge.testing.peers import require_binary


@pytest.fixture(scope="module")
def xvfb() -> Iterator[str]:
    """A real Xvfb (one fixed 1920x1080 output); yields the DISPLAY string."""
    binary = require_binary("Xvfb", "xvfb")
    n = _free_display(140)
    with tempfile.TemporaryDirectory(prefix="cc-xvfb-") as tmp:
        proc = _start_x(
            [binary, f":{n}", "-screen", "0", "1920x1080x24", "-nolisten", "tcp", "-noreset"],
            n,
            Path(tmp) / "xvfb.log",
        )
        try:
            yield f":{n}"
        finally:
            _stop(proc)


@pytest.fixture(scope="module")
def xorg_dummy() -> Iterator[str]:
    """A real Xorg with the dummy driver (16 resizable RandR outputs); yields DISPLAY."""
    binary = require_binary("Xorg", "xserver-xorg-core")
    require_binary("xrandr", "x11-xserver-utils")
    drv = Path("/usr/lib/xorg/modules/drivers/dummy_drv.so")
    from concierge.testing.peers import require

    require(drv.exists(), "dummy X driver missing (apt install xserver-xorg-video-dummy)")
    require(os.geteuid() == 0 or shutil.which("Xorg") is not None, "Xorg needs root here")
    n = _free_display(160)
    with tempfile.TemporaryDirectory(prefix="cc-xorg-") as tmp:
        conf = Path(tmp) / "xorg.conf"
        conf.write_text(XORG_DUMMY_CONF)
        proc = _start_x(
            [
                binary,
                f":{n}",
                "-noreset",
                "+extension",
                "RANDR",
                "-nolisten",
                "tcp",
                "-config",
                str(conf),
                "-logfile",
                str(Path(tmp) / "xorg.log"),
            ],
            n,
            Path(tmp) / "xorg.out",
        )
        try:
            yield f":{n}"
        finally:
            _stop(proc)


@pytest.fixture()
def session_ctx() -> Callable[..., FakeContext]:
    """Factory of FakeContexts that are closed after the test."""
    made: list[FakeContext] = []

    def make(actor_id: str, settings: dict[str, Any] | None = None, **kw: Any) -> FakeContext:
        ctx = RecordingContext(actor_id, settings or {}, **kw)
        made.append(ctx)
        return ctx

    yield make  # type: ignore[misc]
    for ctx in made:
        ctx.close()


@pytest.fixture(scope="module")
def sway() -> Iterator[dict[str, str]]:
    """A real headless sway (wlr-data-control); yields env for wl-clipboard and the socket."""
    binary = require_binary("sway", "sway")
    require_binary("wl-copy", "wl-clipboard")
    runtime = Path(tempfile.mkdtemp(prefix="cc-sway-"))
    conf = runtime / "sway.conf"
    conf.write_text("xwayland disable\noutput HEADLESS-1 resolution 1280x800 position 0,0\n")
    conf.chmod(0o644)
    argv = [binary, "-c", str(conf)]
    if os.geteuid() == 0:  # sway refuses to run as root
        os.chown(runtime, 65534, 65534)
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    runtime.chmod(0o700)
    env = dict(
        os.environ,
        XDG_RUNTIME_DIR=str(runtime),
        HOME=str(runtime),
        WLR_BACKENDS="headless",
        WLR_LIBINPUT_NO_DEVICES="1",
        WLR_RENDERER="pixman",
    )
    env.pop("DISPLAY", None)
    with (runtime / "sway.log").open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        sock = wait_until(
            lambda: (
                next(iter(runtime.glob("wayland-*[0-9]")), None)
                if proc.poll() is None
                else pytest.fail("sway exited: " + (runtime / "sway.log").read_text()[-2000:])
            ),
            timeout=20,
            what="sway socket",
        )
        ipc = wait_until(lambda: next(iter(runtime.glob("sway-ipc.*.sock")), None), what="sway IPC")
        yield {
            "XDG_RUNTIME_DIR": str(runtime),
            "WAYLAND_DISPLAY": sock.name,
            "socket": str(sock),
            "SWAYSOCK": str(ipc),
        }
    finally:
        _stop(proc)
        shutil.rmtree(runtime, ignore_errors=True)
        for leftover in Path(tempfile.gettempdir()).glob("wl-copy-buffer-*"):
            shutil.rmtree(leftover, ignore_errors=True)

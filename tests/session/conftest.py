"""Fixtures of the session-actor tests: real X servers (Xvfb, Xorg + dummy) and helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from concierge.testing.context import FakeContext
from concierge.testing.peers import require_binary

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


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``pred`` until it returns something truthy (generous bound, not a timing test)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class RecordingContext(FakeContext):
    """A FakeContext that also keeps the blobs of casts (FakeContext.casts drops them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.blob_casts: list[tuple[str, str, Any, tuple[bytes, ...]]] = []

    def cast(
        self,
        dst: str,
        type: str,
        body: Any = None,
        *,
        blobs: tuple[bytes, ...] = (),
        **kwargs: Any,
    ) -> None:
        self.blob_casts.append((dst, type, body, tuple(blobs)))
        super().cast(dst, type, body, blobs=blobs, **kwargs)

    def deliver(self, type_: str, body: Any, blobs: tuple[bytes, ...] = ()) -> None:
        """Deliver a cast with blobs (FakeContext.tell has no blobs)."""
        from concierge.actors.node import Incoming

        msg = Incoming(kind="cast", type=type_, body=body, src="session", blobs=blobs)
        self.call_soon(lambda: self.node.handle(msg))  # type: ignore[union-attr]


def sent_with_blobs(ctx: RecordingContext, type_: str) -> list[tuple[dict[str, Any], bytes]]:
    """(body, joined blobs) of the guest->client messages of ``type_``."""
    return [
        (body["body"], b"".join(blobs))
        for dst, mtype, body, blobs in list(ctx.blob_casts)
        if dst == "session" and mtype == "spice.send" and body.get("type") == type_
    ]


def sent(ctx: FakeContext, type_: str) -> list[dict[str, Any]]:
    """Bodies of the guest->client vdagent messages of ``type_`` the node cast to ``session``."""
    return [
        body["body"]
        for dst, mtype, body in list(ctx.casts)
        if dst == "session" and mtype == "spice.send" and body.get("type") == type_
    ]


def _free_display(start: int) -> int:
    for n in range(start, start + 200):
        if not os.path.exists(f"/tmp/.X{n}-lock") and not os.path.exists(f"/tmp/.X11-unix/X{n}"):
            return n
    raise RuntimeError("no free X display number")


def _start_x(argv: list[str], display: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not os.path.exists(f"/tmp/.X11-unix/X{display}"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"X server :{display} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.02)
    time.sleep(0.05)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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

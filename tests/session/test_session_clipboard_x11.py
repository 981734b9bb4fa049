"""Clipboard actor against a real X server (Xvfb) and real X clients (xclip)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from session_helpers import RecordingContext, sent, sent_with_blobs, wait_until

from concierge.actors.clipboard.images import decode_png, encode_png, png_to_bmp
from concierge.actors.clipboard.node import ClipboardNode
from concierge.actors.vdagent import Cap
from concierge.testing.peers import require_binary

SELS = {0: "clipboard", 1: "primary"}
CAPS = [(1 << Cap.CLIPBOARD_BY_DEMAND) | (1 << Cap.CLIPBOARD_SELECTION) | (1 << Cap.CLIPBOARD_GRAB_SERIAL)]


def make_png(w: int = 64, h: int = 48) -> bytes:
    rows = [bytes((x * 4 + y) % 256 for x in range(w * 4)) for y in range(h)]
    return encode_png(w, h, rows, True)


@pytest.fixture()
def clip(xvfb: str, session_ctx: Any) -> Iterator[RecordingContext]:
    require_binary("xclip", "xclip")
    ctx: RecordingContext = session_ctx("clipboard", {"backend": "x11", "x11_display": xvfb})
    ctx.run_node(ClipboardNode)
    ctx.tell("spice.announce_capabilities", {"request": 1, "caps": CAPS})
    yield ctx


class Owner:
    """A guest app owning a selection: ``xclip -quiet -i`` in the foreground."""

    def __init__(self, display: str, sel: str, data: bytes, target: str | None = None) -> None:
        argv = ["xclip", "-d", display, "-quiet", "-i", "-selection", sel]
        if target:
            argv += ["-t", target]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def paste(display: str, sel: str, target: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["xclip", "-d", display, "-o", "-selection", sel, "-t", target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def serve_paste(ctx: RecordingContext, sel: int, clip_type: int, data: bytes, seen: int) -> None:
    """Answer the client side: wait for the guest's REQUEST, send the data as blobs."""
    wait_until(lambda: len(sent(ctx, "clipboard_request")) > seen, what="clipboard_request")
    assert sent(ctx, "clipboard_request")[seen] == {"selection": sel, "type": clip_type}
    chunks = tuple(data[i : i + 65536] for i in range(0, len(data), 65536))
    ctx.deliver("spice.clipboard", {"selection": sel, "type": clip_type}, chunks)


@pytest.mark.parametrize("size", [1024, 1024 * 1024])
@pytest.mark.parametrize("sel", [0, 1])
def test_host_to_guest_text(clip: RecordingContext, xvfb: str, size: int, sel: int) -> None:
    data = (os.urandom(size // 2).hex().encode())[:size]
    clip.tell("spice.clipboard_grab", {"selection": sel, "serial": 0, "types": [1]})
    wait_until(
        lambda: (
            b"UTF8_STRING"
            in subprocess.run(
                ["xclip", "-d", xvfb, "-o", "-selection", SELS[sel], "-t", "TARGETS"],
                capture_output=True,
                check=False,
            ).stdout
        ),
        what="client ownership visible",
    )
    seen = len(sent(clip, "clipboard_request"))
    proc = paste(xvfb, SELS[sel], "UTF8_STRING")
    serve_paste(clip, sel, 1, data, seen)
    out, _ = proc.communicate(timeout=30)
    assert out == data


def test_host_to_guest_png_and_bmp_conversion(clip: RecordingContext, xvfb: str) -> None:
    png = make_png()
    clip.tell("spice.clipboard_grab", {"selection": 0, "serial": 0, "types": [2]})
    wait_until(
        lambda: (
            b"image/bmp"
            in subprocess.run(
                ["xclip", "-d", xvfb, "-o", "-selection", "clipboard", "-t", "TARGETS"],
                capture_output=True,
                check=False,
            ).stdout
        ),
        what="targets",
    )
    seen = len(sent(clip, "clipboard_request"))
    proc = paste(xvfb, "clipboard", "image/png")
    serve_paste(clip, 0, 2, png, seen)
    assert proc.communicate(timeout=30)[0] == png
    proc = paste(xvfb, "clipboard", "image/bmp")
    serve_paste(clip, 0, 2, png, seen + 1)
    assert proc.communicate(timeout=30)[0] == png_to_bmp(png)


@pytest.mark.parametrize("size", [1024, 1024 * 1024])
def test_guest_to_host_text_grab_request_release(clip: RecordingContext, xvfb: str, size: int) -> None:
    data = (os.urandom(size // 2).hex().encode())[:size]
    grabs = len(sent(clip, "clipboard_grab"))
    owner = Owner(xvfb, "clipboard", data)
    try:
        grab = wait_until(lambda: sent(clip, "clipboard_grab")[grabs:], what="guest GRAB")[0]
        assert grab["selection"] == 0 and 1 in grab["types"]
        clip.tell("spice.clipboard_request", {"selection": 0, "type": 1})
        body, payload = wait_until(lambda: sent_with_blobs(clip, "clipboard"), what="data")[-1]
        assert body == {"selection": 0, "type": 1}
        assert payload == data
    finally:
        owner.kill()
    wait_until(lambda: {"selection": 0} in sent(clip, "clipboard_release"), what="RELEASE")


def test_guest_png_byte_exact_and_primary_separate(clip: RecordingContext, xvfb: str) -> None:
    png = make_png(50, 30)
    owner = Owner(xvfb, "primary", png, "image/png")
    try:
        grab = wait_until(lambda: [g for g in sent(clip, "clipboard_grab") if g["selection"] == 1])[-1]
        assert grab["types"][:2] == [2, 3]  # PNG, and BMP by conversion
        assert not [g for g in sent(clip, "clipboard_grab") if g["selection"] == 0]
        clip.tell("spice.clipboard_request", {"selection": 1, "type": 2})
        body, payload = wait_until(lambda: sent_with_blobs(clip, "clipboard"))[-1]
        assert body == {"selection": 1, "type": 2} and payload == png
        clip.tell("spice.clipboard_request", {"selection": 1, "type": 3})
        wait_until(lambda: len(sent_with_blobs(clip, "clipboard")) >= 2)
        body, bmp = sent_with_blobs(clip, "clipboard")[-1]
        assert body["type"] == 3 and bmp[:2] == b"BM" and bmp == png_to_bmp(png)
        clip.tell("spice.clipboard_request", {"selection": 0, "type": 1})  # nothing owned there
        wait_until(lambda: len(sent_with_blobs(clip, "clipboard")) >= 3)
        assert sent_with_blobs(clip, "clipboard")[-1][1] == b""
    finally:
        owner.kill()
    assert decode_png(png)[0] == 50


def test_max_clipboard_and_serials(clip: RecordingContext, xvfb: str) -> None:
    clip.tell("spice.max_clipboard", {"max": 100})
    owner = Owner(xvfb, "clipboard", b"x" * 200)
    try:
        wait_until(lambda: sent(clip, "clipboard_grab"))
        clip.tell("spice.clipboard_request", {"selection": 0, "type": 1})
        _, payload = wait_until(lambda: sent_with_blobs(clip, "clipboard"))[-1]
        assert payload == b""  # over MAX_CLIPBOARD: empty CLIPBOARD
        serial = sent(clip, "clipboard_grab")[-1]["serial"]
        clip.tell("spice.clipboard_grab", {"selection": 0, "serial": serial + 5, "types": [1]})
        state = clip.ask("clipboard.state").body
        assert state["owner"][0] == "guest"  # stale serial ignored
        clip.tell("spice.clipboard_grab", {"selection": 0, "serial": serial + 1, "types": [1]})
        assert clip.ask("clipboard.state").body["owner"][0] == "client"
    finally:
        owner.kill()


def test_client_disconnect_releases_guest_selection(clip: RecordingContext, xvfb: str) -> None:
    clip.tell("spice.clipboard_grab", {"selection": 0, "serial": 0, "types": [1]})

    def targets() -> bytes:
        return subprocess.run(
            ["xclip", "-d", xvfb, "-o", "-selection", "clipboard", "-t", "TARGETS"],
            capture_output=True,
            check=False,
        ).stdout

    wait_until(lambda: b"text/plain;charset=utf-8" in targets())
    clip.tell("spice.client_disconnected", {})
    wait_until(lambda: b"text/plain;charset=utf-8" not in targets(), what="selection cleared")


def test_restart_reannounces_existing_owner(xvfb: str, session_ctx: Any) -> None:
    require_binary("xclip", "xclip")
    owner = Owner(xvfb, "clipboard", b"before the agent")
    try:
        wait_until(
            lambda: (
                subprocess.run(
                    ["xclip", "-d", xvfb, "-o", "-selection", "clipboard"],
                    capture_output=True,
                    check=False,
                ).stdout
                == b"before the agent"
            )
        )
        ctx: RecordingContext = session_ctx("clipboard", {"backend": "x11", "x11_display": xvfb})
        ctx.run_node(ClipboardNode)
        grab = wait_until(lambda: sent(ctx, "clipboard_grab"), what="re-announced GRAB")[0]
        assert grab["types"][0] == 1
    finally:
        owner.kill()


def test_x_server_gone_makes_health_failing(session_ctx: Any, tmp_path: Any) -> None:
    from session_helpers import _free_display, _start_x, _stop

    require_binary("xclip", "xclip")
    n = _free_display(175)
    server = _start_x(["Xvfb", f":{n}", "-nolisten", "tcp"], n, tmp_path / "x.log")
    ctx: RecordingContext = session_ctx("clipboard", {"backend": "x11", "x11_display": f":{n}"})
    ctx.run_node(ClipboardNode)
    _stop(server)
    wait_until(lambda: ctx.health[0] == "failing", what="failing health after the X server died")


def test_pasting_app_dying_mid_transfer_does_not_wedge(clip: RecordingContext, xvfb: str) -> None:
    data = b"d" * (1 << 20)
    clip.tell("spice.clipboard_grab", {"selection": 0, "serial": 0, "types": [1]})
    targets = ["xclip", "-d", xvfb, "-o", "-selection", "clipboard", "-t", "TARGETS"]
    wait_until(lambda: b"text/plain;charset=utf-8" in subprocess.run(targets, capture_output=True, check=False).stdout)
    seen = len(sent(clip, "clipboard_request"))
    doomed = paste(xvfb, "clipboard", "UTF8_STRING")
    wait_until(lambda: len(sent(clip, "clipboard_request")) > seen)
    doomed.kill()
    doomed.communicate()
    clip.deliver("spice.clipboard", {"selection": 0, "type": 1}, (data,))  # INCR to a dead window
    proc = paste(xvfb, "clipboard", "UTF8_STRING")
    serve_paste(clip, 0, 1, data, seen + 1)
    assert proc.communicate(timeout=30)[0] == data

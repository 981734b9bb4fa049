"""Guest -> client clipboard through every hop a real copy takes (issue 15 item 5): a real
application owns the selection (xclip, xsel, a GTK 3 app under Xvfb; wl-copy under sway), the
clipboard actor reads it, and the exact cast it sends (body and blob frames, as the session
gateway relays them unchanged) is handed to the real SPICE front-end, whose bytes the SPICE
host simulator decodes as the client would. 1 MiB copied with xclip used to reach the client
as 262,144 bytes: the front-end sent the first 256 KiB blob frame only, and the actor-level
tests joined the frames themselves.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from session_helpers import RecordingContext, sent, wait_until
from test_session_clipboard_x11 import CAPS

from concierge.actors.clipboard.images import encode_png
from concierge.actors.clipboard.node import ClipboardNode
from concierge.testing.peers import require, require_binary
from concierge.testing.polling_context import PollingFakeContext
from concierge.testing.spice_host import LinkNode, SpiceHost, unix_channel
from concierge.transport.spice.wire import MsgType

SIZES = [1, 262_143, 262_144, 262_145, 1 << 20, 4 << 20]
PNG = 2  # VD_AGENT_CLIPBOARD_IMAGE_PNG


@pytest.fixture()
def clip(xvfb: str, session_ctx: Any) -> Iterator[RecordingContext]:
    ctx: RecordingContext = session_ctx("clipboard", {"backend": "x11", "x11_display": xvfb})
    ctx.run_node(ClipboardNode)
    ctx.tell("spice.announce_capabilities", {"request": 1, "caps": CAPS})
    yield ctx


@pytest.fixture()
def client() -> Iterator[tuple[SpiceHost, PollingFakeContext]]:
    host_fd, guest_fd = unix_channel()
    ctx = PollingFakeContext("transport", {"fd": guest_fd, "name": "spice"})
    ctx.run_node(LinkNode)
    host = SpiceHost(host_fd)
    host.handshake()
    # the client's capabilities must be known before guest data is sent (else it is dropped)
    wait_until(lambda: ctx.counters.get("spice.rx.announce_capabilities"), what="client capabilities")
    try:
        yield host, ctx
    finally:
        ctx.close()
        os.close(host_fd)


GTK_OWNER = Path(__file__).with_name("gtk_clipboard_owner.py")
SYSTEM_PYTHON = "/usr/bin/python3"


def _require_gtk() -> None:
    code = "import gi; gi.require_version('Gtk', '3.0'); from gi.repository import Gtk"
    found = (
        os.path.exists(SYSTEM_PYTHON)
        and subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, check=False).returncode == 0
    )
    require(found, "GTK 3 for Python missing (apt install python3-gi gir1.2-gtk-3.0)")


def _owner(app: str, display: str, data: bytes) -> subprocess.Popen[bytes]:
    env = None
    if app == "xclip":
        argv = ["xclip", "-d", display, "-quiet", "-i", "-selection", "clipboard"]
    elif app == "xsel":
        argv = ["xsel", "--display", display, "--nodetach", "--input", "--clipboard"]
    else:
        argv, env = [SYSTEM_PYTHON, str(GTK_OWNER)], {**os.environ, "DISPLAY": display, "GDK_BACKEND": "x11"}
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdin is not None
    proc.stdin.write(data)
    proc.stdin.close()
    return proc


def paste_to_client(
    clip: RecordingContext, client: tuple[SpiceHost, PollingFakeContext], clip_type: int
) -> tuple[int, MsgType, dict[str, Any], bytes | None]:
    """The client asks for the guest's data; the clipboard actor's cast (body and blob frames)
    is relayed to the front-end as the gateway does; returns what the client receives."""
    host, link = client
    before = len(clip.blob_casts)
    clip.tell("spice.clipboard_request", {"selection": 0, "type": clip_type})
    cast = wait_until(
        lambda: [c for c in list(clip.blob_casts)[before:] if c[2].get("type") == "clipboard"],
        timeout=30,
        what="clipboard data",
    )[-1]
    _dst, mtype, body, blobs = cast
    link.tell(mtype, body, blobs=tuple(blobs))
    return host.read(timeout_s=30)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("app", ["xclip", "xsel", "gtk"])
def test_text_copied_in_the_guest_reaches_the_client_byte_exact(
    clip: RecordingContext, client: tuple[SpiceHost, PollingFakeContext], xvfb: str, app: str, size: int
) -> None:
    if app == "gtk":
        _require_gtk()
    else:
        require_binary(app, app)
    data = (os.urandom(size // 2 + 1).hex().encode())[:size]
    grabs = len(sent(clip, "clipboard_grab"))
    owner = _owner(app, xvfb, data)
    try:
        wait_until(lambda: sent(clip, "clipboard_grab")[grabs:], what="guest GRAB")
        port, kind, message, blob = paste_to_client(clip, client, 1)
        assert (port, kind, message["selection"], message["type"]) == (1, MsgType.CLIPBOARD, 0, 1)
        assert blob is not None and len(blob) == size
        assert blob == data
    finally:
        owner.kill()
        owner.wait()


def test_large_png_copied_in_the_guest_reaches_the_client_byte_exact(
    clip: RecordingContext, client: tuple[SpiceHost, PollingFakeContext], xvfb: str
) -> None:
    """An image well above one blob frame (random pixels: ~1.9 MB of PNG)."""
    require_binary("xclip", "xclip")
    width, height = 800, 600
    png = encode_png(width, height, [os.urandom(width * 4) for _ in range(height)], True)
    assert len(png) > 4 * 262_144
    grabs = len(sent(clip, "clipboard_grab"))
    argv = ["xclip", "-d", xvfb, "-quiet", "-i", "-selection", "clipboard", "-t", "image/png"]
    owner = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert owner.stdin is not None
    owner.stdin.write(png)
    owner.stdin.close()
    try:
        wait_until(lambda: sent(clip, "clipboard_grab")[grabs:], what="guest GRAB")
        _port, kind, message, blob = paste_to_client(clip, client, PNG)
        assert (kind, message["type"]) == (MsgType.CLIPBOARD, PNG)
        assert blob == png
    finally:
        owner.kill()
        owner.wait()


@pytest.mark.parametrize("size", [262_145, 1 << 20, 4 << 20])
def test_wl_copy_under_sway_reaches_the_client_byte_exact(
    sway: dict[str, str], session_ctx: Any, client: tuple[SpiceHost, PollingFakeContext], size: int
) -> None:
    """The same path from a Wayland application (wl-copy, wlr-data-control)."""
    require_binary("wl-copy", "wl-clipboard")
    clip: RecordingContext = session_ctx("clipboard", {"backend": "wayland", "wayland_display": sway["socket"]})
    clip.run_node(ClipboardNode)
    clip.tell("spice.announce_capabilities", {"request": 1, "caps": CAPS})
    env = dict(os.environ, XDG_RUNTIME_DIR=sway["XDG_RUNTIME_DIR"], WAYLAND_DISPLAY=sway["WAYLAND_DISPLAY"])
    env.pop("DISPLAY", None)
    data = (os.urandom(size // 2 + 1).hex().encode())[:size]
    argv = ["wl-copy", "--foreground", "-t", "text/plain;charset=utf-8"]
    owner = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE)
    assert owner.stdin is not None
    owner.stdin.write(data)
    owner.stdin.close()
    try:
        wait_until(lambda: [g for g in sent(clip, "clipboard_grab") if g["selection"] == 0 and 1 in g["types"]])
        _port, kind, _message, blob = paste_to_client(clip, client, 1)
        assert kind == MsgType.CLIPBOARD and blob == data
    finally:
        owner.kill()
        owner.wait()


class _RecordingLink(PollingFakeContext):
    """The transport side, also keeping the blob frames of what the front-end casts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.blob_casts: list[tuple[str, str, Any, tuple[bytes, ...]]] = []

    def cast(self, dst: str, type: str, body: Any = None, *, blobs: tuple[bytes, ...] = (), **kw: Any) -> None:
        self.blob_casts.append((dst, type, body, tuple(blobs)))
        super().cast(dst, type, body, blobs=blobs, **kw)


@pytest.mark.parametrize("size", [1, 262_145, 1 << 20, 4 << 20])
def test_text_copied_on_the_client_is_pasted_byte_exact_by_a_guest_app(
    clip: RecordingContext, xvfb: str, size: int
) -> None:
    """Client -> guest through the same hops: SPICE host simulator -> front-end (2048-byte
    chunks reassembled) -> clipboard actor -> ``xclip -o`` in the guest."""
    require_binary("xclip", "xclip")
    host_fd, guest_fd = unix_channel()
    link = _RecordingLink("transport", {"fd": guest_fd, "name": "spice"})
    link.run_node(LinkNode)
    host = SpiceHost(host_fd)
    try:
        host.handshake()
        wait_until(lambda: link.counters.get("spice.rx.announce_capabilities"), what="client capabilities")

        def relay_to_guest(type_: str, seen: int) -> tuple[Any, tuple[bytes, ...]]:
            found = wait_until(lambda: [c for c in link.blob_casts[seen:] if c[1] == type_], timeout=30, what=type_)
            return found[0][2], found[0][3]

        data = (os.urandom(size // 2 + 1).hex().encode())[:size]
        seen = len(link.blob_casts)
        host.send(MsgType.CLIPBOARD_GRAB, {"selection": 0, "serial": 0, "types": [1]})
        body, _ = relay_to_guest("spice.clipboard_grab", seen)
        clip.tell("spice.clipboard_grab", body)
        requests = len(sent(clip, "clipboard_request"))
        paste = subprocess.Popen(
            ["xclip", "-d", xvfb, "-o", "-selection", "clipboard", "-t", "UTF8_STRING"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        request = wait_until(lambda: sent(clip, "clipboard_request")[requests:], timeout=30, what="REQUEST")[0]
        link.tell("spice.send", {"type": "clipboard_request", "body": request})
        _port, kind, asked, _ = host.read(timeout_s=30)
        assert kind == MsgType.CLIPBOARD_REQUEST and asked["type"] == 1
        seen = len(link.blob_casts)
        host.send(MsgType.CLIPBOARD, {"selection": 0, "type": 1}, data)
        body, blobs = relay_to_guest("spice.clipboard", seen)
        clip.deliver("spice.clipboard", body, blobs)
        out, err = paste.communicate(timeout=60)
        assert paste.returncode == 0, err
        assert len(out) == size and out == data
    finally:
        link.close()
        os.close(host_fd)

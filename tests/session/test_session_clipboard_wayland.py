"""Clipboard actor against a real Wayland compositor (headless sway, wlr-data-control) and
real wl-clipboard clients; plus the "no data-control" path against a tiny in-test compositor."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from session_helpers import RecordingContext, sent, sent_with_blobs, wait_until

from concierge.actors.clipboard.images import encode_png
from concierge.actors.clipboard.node import ClipboardNode
from concierge.actors.clipboard.wayland import WaylandClipboard
from concierge.actors.vdagent import Cap

CAPS = [(1 << Cap.CLIPBOARD_BY_DEMAND) | (1 << Cap.CLIPBOARD_SELECTION)]


def wl_env(sway: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ, XDG_RUNTIME_DIR=sway["XDG_RUNTIME_DIR"], WAYLAND_DISPLAY=sway["WAYLAND_DISPLAY"])
    env.pop("DISPLAY", None)
    return env


@pytest.fixture()
def wclip(sway: dict[str, str], session_ctx: Any) -> Iterator[RecordingContext]:
    ctx: RecordingContext = session_ctx("clipboard", {"backend": "wayland", "wayland_display": sway["socket"]})
    ctx.run_node(ClipboardNode)
    ctx.tell("spice.announce_capabilities", {"request": 1, "caps": CAPS})
    yield ctx


def types_listed(sway: dict[str, str], primary: bool = False) -> str:
    argv = ["wl-paste", "--list-types"] + (["--primary"] if primary else [])
    return subprocess.run(argv, env=wl_env(sway), capture_output=True, text=True, check=False).stdout


@pytest.mark.parametrize("size", [1024, 1024 * 1024])
def test_wayland_host_to_guest_text(wclip: RecordingContext, sway: dict[str, str], size: int) -> None:
    data = os.urandom(size // 2).hex().encode()[:size]
    wclip.tell("spice.clipboard_grab", {"selection": 0, "types": [1]})
    wait_until(lambda: "text/plain;charset=utf-8" in types_listed(sway), what="offer visible")
    seen = len(sent(wclip, "clipboard_request"))
    proc = subprocess.Popen(
        ["wl-paste", "--no-newline", "-t", "text/plain;charset=utf-8"],
        env=wl_env(sway),
        stdout=subprocess.PIPE,
    )
    wait_until(lambda: len(sent(wclip, "clipboard_request")) > seen, what="REQUEST")
    wclip.deliver(
        "spice.clipboard",
        {"selection": 0, "type": 1},
        tuple(data[i : i + 65536] for i in range(0, len(data), 65536)),
    )
    assert proc.communicate(timeout=30)[0] == data


@pytest.mark.parametrize("primary", [False, True])
def test_wayland_guest_to_host(wclip: RecordingContext, sway: dict[str, str], primary: bool) -> None:
    sel = 1 if primary else 0
    png = encode_png(20, 10, [bytes(range(80))] * 10, True)
    argv = ["wl-copy", "--foreground", "-t", "image/png"] + (["--primary"] if primary else [])
    proc = subprocess.Popen(argv, env=wl_env(sway), stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(png)
    proc.stdin.close()
    try:
        grab = wait_until(lambda: [g for g in sent(wclip, "clipboard_grab") if g["selection"] == sel], what="GRAB")[-1]
        assert grab["types"][:2] == [2, 3]
        wclip.tell("spice.clipboard_request", {"selection": sel, "type": 2})
        body, payload = wait_until(lambda: sent_with_blobs(wclip, "clipboard"), what="data")[-1]
        assert body == {"selection": sel, "type": 2} and payload == png
    finally:
        proc.kill()
        proc.wait()


def test_wayland_text_release_when_owner_clears(wclip: RecordingContext, sway: dict[str, str]) -> None:
    text = "line one\nline two\n" * 40
    proc = subprocess.Popen(["wl-copy", "--foreground"], env=wl_env(sway), stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(text.encode())
    proc.stdin.close()
    wait_until(lambda: [g for g in sent(wclip, "clipboard_grab") if 1 in g["types"]], what="text GRAB")
    wclip.tell("spice.clipboard_request", {"selection": 0, "type": 1})
    _, payload = wait_until(lambda: [d for d in sent_with_blobs(wclip, "clipboard") if d[1]])[-1]
    assert payload == text.encode()
    subprocess.run(["wl-copy", "--clear"], env=wl_env(sway), check=True, timeout=10)
    wait_until(lambda: {"selection": 0} in sent(wclip, "clipboard_release"), what="RELEASE")
    proc.kill()
    proc.wait()


def _fake_compositor(server: socket.socket, globals_: list[tuple[str, int]]) -> None:
    """Answer get_registry + sync with ``globals_`` and the callback's done, then hang up."""
    buf = b""
    registry = callback = 0
    while not (registry and callback):
        buf += server.recv(4096)
        while len(buf) >= 8:
            oid, word = struct.unpack_from("<II", buf)
            size, opcode = word >> 16, word & 0xFFFF
            (new_id,) = struct.unpack_from("<I", buf, 8)
            if oid == 1 and opcode == 1:
                registry = new_id
            elif oid == 1 and opcode == 0:
                callback = new_id
            buf = buf[size:]
    for n, (iface, version) in enumerate(globals_, 1):
        raw = iface.encode() + b"\0"
        raw += b"\0" * (-len(raw) % 4)
        body = struct.pack("<II", n, len(iface) + 1) + raw + struct.pack("<I", version)
        server.sendall(struct.pack("<II", registry, (8 + len(body)) << 16 | 0) + body)
    server.sendall(struct.pack("<III", callback, 12 << 16, 1))


def test_no_data_control_is_a_clear_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "wl-fake"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            _fake_compositor(conn, [("wl_compositor", 4), ("wl_seat", 7), ("wl_data_device_manager", 3)])
            conn.recv(4096)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert WaylandClipboard.connect(str(path)) is None
    thread.join(timeout=5)
    listener.close()


def test_wayland_guest_to_host_1mib_text(wclip: RecordingContext, sway: dict[str, str]) -> None:
    data = os.urandom(1 << 19).hex().encode()
    proc = subprocess.Popen(
        ["wl-copy", "--foreground", "-t", "text/plain;charset=utf-8"],
        env=wl_env(sway),
        stdin=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(data)
    proc.stdin.close()
    try:
        mark = len(sent_with_blobs(wclip, "clipboard"))
        wait_until(lambda: [g for g in sent(wclip, "clipboard_grab") if g["selection"] == 0 and 1 in g["types"]])
        wclip.tell("spice.clipboard_request", {"selection": 0, "type": 1})
        body, payload = wait_until(lambda: sent_with_blobs(wclip, "clipboard")[mark:], what="data")[0]
        assert body == {"selection": 0, "type": 1} and payload == data
    finally:
        proc.kill()
        proc.wait()

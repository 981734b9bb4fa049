#!/usr/bin/env python3
"""Write the hand-made seed inputs of every fuzz target into ``tools/fuzz/corpus/<target>/``.

Seeds are real protocol messages (what qemu's test suite, vdsm, spice-gtk and the session agent
send) so the fuzzer starts from the interesting parts of each grammar. Every seed starts with
the two bytes that choose the chunking (see ``fuzz_common.split_seed``), except config seeds.
Run once after changing a grammar, then ``run.py --merge`` keeps the corpus minimal.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))

from concierge.actors.session.framing import encode as session_frame  # noqa: E402
from concierge.transport.ovirt.codec import encode as ovirt_line  # noqa: E402
from concierge.transport.spice import codec as spice_codec  # noqa: E402
from concierge.transport.spice.codec import Layout  # noqa: E402
from concierge.transport.spice.wire import (  # noqa: E402
    GUEST_CAPS,
    MOUSE_STATE_STRUCT,
    MsgType,
    caps_to_words,
    frame,
)

QGA = [
    b'{"execute": "guest-ping"}',
    b'\xff{"execute": "guest-sync-delimited", "arguments": {"id": 1234567}}',
    b'{"execute": "guest-info"}\n{"execute":"guest-get-osinfo"}',
    b'{"execute": "guest-file-open", "arguments": {"path": "/tmp/x", "mode": "w+"}}',
    b'{"execute": "guest-file-write", "arguments": {"handle": 1000, "buf-b64": "aGVsbG8=", "count": 5}}',
    b'{"execute": "guest-exec", "arguments": {"path": "/bin/echo", "arg": ["a", "\\u00e9\\ud83d\\ude00"], '
    b'"capture-output": true}}',
    b'{"execute": "guest-set-time", "arguments": {"time": -1.5e9}}',
    b"{'execute': 'guest-ping', 'id': [null, false, 0, -0, 0.5, 1E+3, 18446744073709551615]}",
    b'{"execute": "x", "arguments": "\\"\\\\\\/\\b\\f\\n\\r\\t\\x"}',
    b'{"a": [[[[{"b": {}}]]]], "c": "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xc0\x80"}',
    b'[1, 2,, 3] } ] {"a" 1} {"a": 1 "b": 2} {1: 2} {"a": 1, "a": 2}',
    b'{"execute": "guest-ping"} @ # \x01 01 1. 1e -x tru nulll "\x1f" \xfe {"execute": "guest-ping"}',
    b'{"execute": "guest-network-get-interfaces", "arguments": {}, "id": "abc"}',
]

OVIRT = [
    ovirt_line("refresh", {"apiVersion": 3}),
    ovirt_line("api-version", {"apiVersion": 3}),
    ovirt_line("login", {"username": "alice", "password": "s3cr\u00e9t", "domain": ""}),
    ovirt_line("lock-screen"),
    ovirt_line("log-off"),
    ovirt_line("shutdown", {"timeout": 30, "message": "bye", "reboot": False}),
    ovirt_line("set-number-of-cpus", {"count": 4}),
    ovirt_line("echo", {"v": [1, 2.5, None, True, {"k": "\u0001"}]}),
    b'{"__name__": "hibernate", "state": "disk"}\r\n  \n{"__name__": 1}\n[1]\n\xff\xfe\n{"__name__": "x"',
    b'{"__name__": "heartbeat", "free-ram": 1e400, "n": NaN, "m": -Infinity}\n',
    b'{"__name__": "host-name", "name": "\\ud800\\u0085\\uffff"}\n{"a": "b"}\n',
]


_PLAIN = Layout()
_SEL = Layout(selection=True, grab_serial=True)


def _spice(kind: MsgType, body: dict[str, object], blob: bytes = b"", layout: Layout = _PLAIN, port: int = 1) -> bytes:
    return frame(port, kind, spice_codec.encode(kind, body, layout, blob))


SPICE = [
    _spice(MsgType.ANNOUNCE_CAPABILITIES, {"request": 1, "caps": caps_to_words(GUEST_CAPS)}),
    frame(2, MsgType.MOUSE_STATE, MOUSE_STATE_STRUCT.pack(100, 200, 1, 0), opaque=7),
    _spice(
        MsgType.MONITORS_CONFIG,
        {
            "flags": 3,
            "monitors": [{"height": 768, "width": 1024, "depth": 32, "x": 0, "y": 0}] * 2,
            "physical_sizes": [{"height": 200, "width": 300}] * 2,
        },
    ),
    _spice(MsgType.CLIPBOARD_GRAB, {"selection": 0, "serial": 0, "types": [1, 2, 3]}, layout=_SEL),
    _spice(MsgType.CLIPBOARD_REQUEST, {"selection": 1, "type": 1}, layout=_SEL),
    _spice(MsgType.CLIPBOARD, {"selection": 0, "type": 1}, b"hello clipboard" * 200, layout=_SEL),
    _spice(MsgType.CLIPBOARD_RELEASE, {"selection": 2}, layout=_SEL),
    _spice(MsgType.FILE_XFER_START, {"id": 1, "data": "[vdagent-file-xfer]\nname=a.txt\nsize=5\n"}),
    _spice(MsgType.FILE_XFER_DATA, {"id": 1}, b"hello"),
    _spice(MsgType.FILE_XFER_STATUS, {"id": 1, "result": 3, "data": b""}),
    _spice(MsgType.MAX_CLIPBOARD, {"max": 1 << 20}),
    _spice(MsgType.AUDIO_VOLUME_SYNC, {"is_playback": 1, "mute": 0, "volume": [100, 200]}),
    _spice(
        MsgType.GRAPHICS_DEVICE_INFO,
        {
            "display_info": [
                {"channel_id": 0, "monitor_id": 0, "device_display_id": 1, "device_address": "pci/0000/02.0"}
            ]
        },
    ),
    _spice(MsgType.DISPLAY_CONFIG, {"flags": 1, "depth": 24}),
    _spice(MsgType.REPLY, {"type": 2, "error": 0}),
    _spice(MsgType.CLIENT_DISCONNECTED, {}, port=2),
]

SESSION = [
    session_frame("hello", {"version": 1, "display": ":0", "uid": 1000}),
    session_frame("welcome", {"version": 1, "active": True}),
    session_frame("geometry", {"monitors": [{"x": 0, "y": 0, "width": 1024, "height": 768, "display_id": 0}]}),
    session_frame("spice.send", {"type": "clipboard", "body": {"selection": 0, "type": 1}}, (b"text",)),
    session_frame("active", {"active": False, "file_xfer": True}),
    session_frame("reject", {"reason": "another agent"}) + session_frame("x", None, (b"", b"\0" * 9)),
]

CONFIG = [
    (ROOT / "src/concierge/config/defaults.toml").read_bytes(),
    (ROOT / "packaging/etc/concierge.toml").read_bytes(),
    b'[agent]\nlog_level = "debug"\nlane_spin_us = 0\n[actors.monitor]\nrestart = "transient"\n'
    b"[actors.monitor.settings]\nx = [1, 2.5, {a = 1979-05-27T07:32:00Z}]\n"
    b'[channels.qga]\nprotocol = "qga"\nmethod = "unix-listen"\npath = "/run/q.sock"\n',
    b'[actors.Bad]\nentry = "x:y"\n[[channels]]\n"a.b" = 0x1f\n',
]


def write(target: str, seeds: list[bytes], prefix: bytes) -> None:
    """Store each seed under its SHA-1, as libFuzzer names corpus files."""
    folder = HERE / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        for pre in (prefix, b"\x07\x01") if prefix else (b"",):
            data = pre + seed
            (folder / hashlib.sha1(data, usedforsecurity=False).hexdigest()).write_bytes(data)


if __name__ == "__main__":
    write("qga", QGA, b"\0\0")
    write("ovirt", OVIRT, b"\0\0")
    write("spice", [b"".join(SPICE), *SPICE], b"\0\0")
    write("session", [b"".join(SESSION), *SESSION], b"\0\0")
    write("config", CONFIG, b"")

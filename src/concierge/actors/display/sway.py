"""sway (wlroots) layout backend over the sway IPC socket (the i3-ipc protocol, $SWAYSOCK).

GET_OUTPUTS reads the layout; one RUN_COMMAND of ``output NAME mode ... position ...`` /
``output NAME disable`` sets it; a second connection subscribed to ``output`` events tells
the node about changes. Called from the display actor's thread (the watch connection from
the bridge, non-blocking). Must not import Xlib, jeepney or the node.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
from collections.abc import Sequence
from typing import Any

from concierge.actors.display.layout import Monitor
from concierge.errors import UnavailableError

log = logging.getLogger(__name__)

Rect = dict[str, int]
MAGIC = b"i3-ipc"
RUN_COMMAND, SUBSCRIBE, GET_OUTPUTS = 0, 2, 3
TIMEOUT_S = 5.0


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(TIMEOUT_S)
    try:
        sock.connect(path)
    except OSError as err:
        sock.close()
        raise UnavailableError(f"cannot connect to sway IPC {path}: {err}") from err
    return sock


def _send(sock: socket.socket, kind: int, payload: str = "") -> None:
    raw = payload.encode()
    sock.sendall(MAGIC + struct.pack("<II", len(raw), kind) + raw)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise OSError("sway closed the IPC socket")
        buf += chunk
    return bytes(buf)


def _recv(sock: socket.socket) -> tuple[int, Any]:
    header = _recv_exact(sock, 14)
    if header[:6] != MAGIC:
        raise OSError("not an i3-ipc reply")
    size, kind = struct.unpack("<II", header[6:])
    return kind, json.loads(_recv_exact(sock, size) or b"null")


class SwayBackend:
    """Applies layouts through sway's IPC."""

    name = "sway"

    def __init__(self, path: str) -> None:
        if not path:
            raise UnavailableError("SWAYSOCK is not set")
        self.path = path
        self.sock = _connect(path)
        self._watch: socket.socket | None = None
        self._buffer = bytearray()

    def close(self) -> None:
        """Close the IPC connection(s)."""
        self.sock.close()
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def _call(self, kind: int, payload: str = "") -> Any:
        _send(self.sock, kind, payload)
        _, reply = _recv(self.sock)
        return reply

    def _outputs(self) -> list[dict[str, Any]]:
        outputs = self._call(GET_OUTPUTS)
        return [o for o in outputs if isinstance(o, dict) and o.get("name")]

    def output_count(self) -> int:
        """Outputs sway knows (enabled or not)."""
        return len(self._outputs())

    def current(self) -> dict[int, Rect]:
        """Active outputs by index (sway's order): {index: {x, y, width, height}}."""
        out: dict[int, Rect] = {}
        for index, output in enumerate(self._outputs()):
            rect = output.get("rect") or {}
            if output.get("active") and rect.get("width") and rect.get("height"):
                out[index] = {k: int(rect[k]) for k in ("x", "y", "width", "height")}
        return out

    def apply(self, placements: Sequence[tuple[int, Monitor]], before: dict[int, Rect] | None = None) -> None:
        """One RUN_COMMAND for the whole layout (sway applies it as a transaction)."""
        del before
        outputs = self._outputs()
        wanted = dict(placements)
        if any(index >= len(outputs) for index in wanted):
            raise ValueError(f"only {len(outputs)} outputs, layout needs more")
        commands: list[str] = []
        for index, output in enumerate(outputs):
            name = output["name"]
            mon = wanted.get(index)
            if mon is None:
                if output.get("active"):
                    commands.append(f"output {name} disable")
                continue
            modes = {(m.get("width"), m.get("height")) for m in output.get("modes") or []}
            custom = "" if (mon.width, mon.height) in modes else "--custom "
            commands.append(
                f"output {name} enable mode {custom}{mon.width}x{mon.height} position {mon.x} {mon.y} scale 1"
            )
        results = self._call(RUN_COMMAND, "; ".join(commands))
        failed = [r.get("error", "failed") for r in results or [] if not r.get("success")]
        if failed:
            raise ValueError(f"sway refused the layout: {failed[0]}")

    def watch_fd(self) -> int | None:
        """A second connection subscribed to ``output`` events."""
        try:
            watch = _connect(self.path)
            _send(watch, SUBSCRIBE, json.dumps(["output"]))
            _, reply = _recv(watch)
        except (OSError, UnavailableError, ValueError) as err:
            log.warning("cannot watch sway outputs: %s", err, extra={"event": "display.watch"})
            return None
        if not (isinstance(reply, dict) and reply.get("success")):
            log.info(  # sway < 1.8 has no "output" event: layouts are re-read after applies only
                "sway offers no output events", extra={"event": "display.watch_unsupported"}
            )
            watch.close()
            return None
        watch.setblocking(False)
        self._watch = watch
        return watch.fileno()

    def drain_changes(self) -> bool:
        """Read the buffered events without blocking; True if an output event arrived."""
        if self._watch is None:
            return False
        try:
            while chunk := self._watch.recv(65536):
                self._buffer += chunk
        except BlockingIOError:
            pass
        except OSError:
            self._watch.close()
            self._watch = None
        changed = False
        while len(self._buffer) >= 14:
            size = struct.unpack_from("<I", self._buffer, 6)[0]
            if len(self._buffer) < 14 + size:
                break
            del self._buffer[: 14 + size]
            changed = True
        return changed

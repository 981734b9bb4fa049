"""A minimal Wayland wire-protocol client: framing, argument marshalling and fd passing.

Only what a background data-control client needs (wl_display, wl_registry, wl_callback plus
caller-defined interfaces described by signature strings). No libwayland, no threads: the
owner polls :attr:`WaylandConnection.fileno` and calls :meth:`read_events`.
Standard library only.
"""

from __future__ import annotations

import array
import collections
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_FDS = 28
Handler = Callable[[list[Any]], None]


class WaylandError(OSError):
    """The compositor closed the connection or reported a protocol error."""


def socket_path(name: str, env: dict[str, str] | os._Environ[str]) -> Path:
    """Resolve ``WAYLAND_DISPLAY`` (a name under XDG_RUNTIME_DIR, or an absolute path)."""
    if not name:
        raise WaylandError("WAYLAND_DISPLAY is not set")
    if name.startswith("/"):
        return Path(name)
    runtime = env.get("XDG_RUNTIME_DIR")
    if not runtime:
        raise WaylandError("XDG_RUNTIME_DIR is not set")
    return Path(runtime) / name


class WaylandConnection:
    """One client connection. Event signatures use: i int, u uint, f fixed, s string,
    o object (id), n new_id (id), a array, h fd; a leading ``?`` marks nullable (ignored)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.connect(str(path))
        except OSError as err:
            self.sock.close()
            raise WaylandError(f"cannot connect to {path}: {err}") from err
        self._next_id = 2
        self._in = bytearray()
        self._fds: collections.deque[int] = collections.deque()
        # object id -> (event signatures by opcode, handlers by opcode)
        self.objects: dict[int, tuple[list[str], dict[int, Handler]]] = {}
        self.register(1, ["ous", "u"], {0: self._on_error})  # wl_display: error, delete_id
        self.error: str | None = None

    def fileno(self) -> int:
        """The socket to poll for input."""
        return self.sock.fileno()

    def close(self) -> None:
        """Close the socket and any fd received but not consumed."""
        while self._fds:
            os.close(self._fds.popleft())
        self.sock.close()

    def new_id(self) -> int:
        """Allocate a client object id."""
        self._next_id += 1
        return self._next_id - 1

    def register(self, oid: int, events: list[str], handlers: dict[int, Handler]) -> None:
        """Describe object ``oid``'s events and who handles them."""
        self.objects[oid] = (events, handlers)

    def forget(self, oid: int) -> None:
        """Drop an object (after its destructor request)."""
        self.objects.pop(oid, None)

    def request(self, oid: int, opcode: int, sig: str = "", *args: Any) -> None:
        """Marshal and send one request; fds (``h``) go as SCM_RIGHTS."""
        payload = bytearray()
        fds: list[int] = []
        for code, value in zip(sig.replace("?", ""), args, strict=True):
            if code in "uon":
                payload += struct.pack("<I", value or 0)
            elif code == "i":
                payload += struct.pack("<i", value)
            elif code == "s":
                raw = value.encode() + b"\0"
                payload += struct.pack("<I", len(raw)) + raw + b"\0" * (-len(raw) % 4)
            elif code == "a":
                payload += struct.pack("<I", len(value)) + value + b"\0" * (-len(value) % 4)
            elif code == "h":
                fds.append(value)
            else:
                raise ValueError(f"bad signature code {code}")
        header = struct.pack("<II", oid, (8 + len(payload)) << 16 | opcode)
        data = bytes(header + payload)
        if fds:
            self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        else:
            self.sock.sendall(data)

    def read_events(self) -> None:
        """Read what is available and dispatch complete events (call when readable)."""
        try:
            data, ancdata, _flags, _addr = self.sock.recvmsg(65536, socket.CMSG_SPACE(MAX_FDS * 4))
        except (BlockingIOError, InterruptedError):
            return
        for level, kind, raw in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(raw[: len(raw) - len(raw) % fds.itemsize])
                self._fds.extend(fds)
        if not data:
            raise WaylandError("compositor closed the connection")
        self._in += data
        self._dispatch()

    def _dispatch(self) -> None:
        while len(self._in) >= 8:
            oid, word = struct.unpack_from("<II", self._in)
            size, opcode = word >> 16, word & 0xFFFF
            if size < 8:
                raise WaylandError("corrupt message header")
            if len(self._in) < size:
                return
            body = bytes(self._in[8:size])
            del self._in[:size]
            entry = self.objects.get(oid)
            if entry is None or opcode >= len(entry[0]):
                continue  # an object we already destroyed, or an event from a newer version
            events, handlers = entry
            args = self._unmarshal(events[opcode], body)
            handler = handlers.get(opcode)
            if handler is not None:
                handler(args)
            else:
                for arg, code in zip(args, events[opcode].replace("?", ""), strict=False):
                    if code == "h":
                        os.close(arg)

    def _unmarshal(self, sig: str, body: bytes) -> list[Any]:
        out: list[Any] = []
        pos = 0
        for code in sig.replace("?", ""):
            if code == "h":
                out.append(self._fds.popleft() if self._fds else -1)
                continue
            (word,) = struct.unpack_from("<I", body, pos)
            pos += 4
            if code in "uon":
                out.append(word)
            elif code == "i":
                out.append(struct.unpack("<i", struct.pack("<I", word))[0])
            elif code == "f":
                out.append(struct.unpack("<i", struct.pack("<I", word))[0] / 256)
            elif code in "sa":
                raw = body[pos : pos + word]
                pos += word + (-word % 4)
                out.append(
                    raw[:-1].decode("utf-8", errors="replace")
                    if code == "s" and word
                    else (None if code == "s" else raw)
                )
        return out

    def _on_error(self, args: list[Any]) -> None:
        self.error = f"object {args[0]} error {args[1]}: {args[2]}"
        raise WaylandError(self.error)

    # --- core helpers ------------------------------------------------------------------------
    def get_registry(self, on_global: Callable[[int, str, int], None]) -> int:
        """wl_display.get_registry; ``on_global(name, interface, version)`` per global."""
        rid = self.new_id()
        self.register(rid, ["usu", "u"], {0: lambda a: on_global(a[0], a[1], a[2])})
        self.request(1, 1, "n", rid)
        return rid

    def bind(self, registry: int, name: int, interface: str, version: int) -> int:
        """wl_registry.bind (untyped new_id: interface name, version, id)."""
        oid = self.new_id()
        self.request(registry, 0, "usun", name, interface, version, oid)
        return oid

    def sync(self, on_done: Callable[[], None]) -> None:
        """wl_display.sync: ``on_done`` runs once everything sent before was processed."""
        cid = self.new_id()

        def done(_args: list[Any]) -> None:
            self.forget(cid)
            on_done()

        self.register(cid, ["u"], {0: done})
        self.request(1, 0, "n", cid)

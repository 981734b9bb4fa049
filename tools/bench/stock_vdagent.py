"""Drive the stock spice-vdagentd + spice-vdagent (0.22) as a SPICE client would, so the
session benchmark can measure the stock agent in the same run (the anchor).

The daemon's "virtio port" is a UNIX socket we listen on (the daemon connects to it when
open() fails); its uinput device is a FIFO we drain. Messages are framed as spice-server
does: VDIChunkHeader{port, size} + VDAgentMessage{protocol 1, type, opaque, size}, chunks of
at most 2048 bytes. Tools only (not shipped).
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import tempfile
import threading
import time
from typing import Any

CLIENT_PORT = 1
ANNOUNCE, REPLY, MONITORS_CONFIG, CLIPBOARD = 6, 3, 2, 4
GRAB, REQUEST, RELEASE = 7, 8, 9
XFER_START, STATUS, XFER_DATA = 10, 11, 12
CAPS = (1 << 1) | (1 << 2) | (1 << 5) | (1 << 6)  # MONITORS_CONFIG, REPLY, BY_DEMAND, SELECTION


class StockAgent:
    """spice-vdagentd + spice-vdagent on ``display``, connected to an in-process fake host."""

    def __init__(self, display: str) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="cc-stock-")
        base = self.tmp.name
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(f"{base}/port")
        self.listener.listen(1)
        os.mkfifo(f"{base}/fifo")
        self.fifo = os.open(f"{base}/fifo", os.O_RDONLY | os.O_NONBLOCK)
        self.daemon = subprocess.Popen(
            [
                "spice-vdagentd",
                "-x",
                "-X",
                "-f",
                "-s",
                f"{base}/port",
                "-S",
                f"{base}/sock",
                "-u",
                f"{base}/fifo",
            ],
            stderr=subprocess.DEVNULL,
        )
        while not os.path.exists(f"{base}/sock"):
            time.sleep(0.02)
        env = dict(
            os.environ,
            NO_AT_BRIDGE="1",
            GDK_BACKEND="x11",
            DISPLAY=display,
            DBUS_SESSION_BUS_ADDRESS="unix:path=/nonexistent",
        )
        self.agent = subprocess.Popen(
            [
                "spice-vdagent",
                "-x",
                "-s",
                f"{base}/port",
                "-S",
                f"{base}/sock",
                "-f",
                base,
                "-o",
                "0",
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        self.listener.settimeout(20)
        self.conn, _ = self.listener.accept()
        self.log: list[tuple[float, int, bytes]] = []
        self.cond = threading.Condition()
        self.auto_answer: bytes | None = None
        threading.Thread(target=self._reader, daemon=True).start()
        self.send(ANNOUNCE, struct.pack("<II", 1, CAPS))
        self.wait(ANNOUNCE)

    def close(self) -> None:
        """Kill both processes and remove the temp dir."""
        for proc in (self.agent, self.daemon):
            proc.kill()
            proc.wait()
        self.conn.close()
        self.listener.close()
        os.close(self.fifo)
        self.tmp.cleanup()

    def send(self, msg_type: int, payload: bytes) -> None:
        """Frame one client message as spice-server would (2048-byte chunks)."""
        data = struct.pack("<IIQI", 1, msg_type, 0, len(payload)) + payload
        out = bytearray()
        for i in range(0, len(data), 2048):
            chunk = data[i : i + 2048]
            out += struct.pack("<II", CLIENT_PORT, len(chunk)) + chunk
        self.conn.sendall(out)

    def wait(self, msg_type: int, after: int = 0, timeout: float = 20) -> tuple[float, bytes]:
        """The first message of ``msg_type`` at log index >= ``after``, and when it arrived."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for when, kind, payload in self.log[after:]:
                    if kind == msg_type:
                        return when, payload
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(msg_type)
                self.cond.wait(left)

    def _deliver(self, when: float, kind: int, payload: bytes) -> None:
        if kind == REQUEST and self.auto_answer is not None:  # a client answering at once
            self.send(CLIPBOARD, payload[:4] + struct.pack("<I", 1) + self.auto_answer)
        with self.cond:
            self.log.append((when, kind, payload))
            self.cond.notify_all()

    def _reader(self) -> None:
        buf = bytearray()
        pending: dict[int, Any] = {}
        try:
            while True:
                data = self.conn.recv(1 << 20)
                if not data:
                    return
                buf += data
                while len(buf) >= 8:
                    port, size = struct.unpack_from("<II", buf)
                    if len(buf) < 8 + size:
                        break
                    chunk = bytes(buf[8 : 8 + size])
                    del buf[: 8 + size]
                    msg = pending.get(port)
                    if msg is None:
                        _, kind, _, total = struct.unpack_from("<IIQI", chunk)
                        msg = pending[port] = [kind, total, bytearray(chunk[20:])]
                    else:
                        msg[2] += chunk
                    if len(msg[2]) >= msg[1]:
                        del pending[port]
                        self._deliver(time.perf_counter(), msg[0], bytes(msg[2]))
        except OSError:
            return

    def memory(self) -> tuple[float, float]:
        """RSS and PSS (MB) of the session agent."""
        rss = pss = 0.0
        with open(f"/proc/{self.agent.pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1]) / 1024
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1]) / 1024
        return rss, pss


class StockHost:
    """The fake SPICE client of the stock spice-vdagentd + spice-vdagent."""

    name = "stock"

    def __init__(self, display: str) -> None:
        self.agent = StockAgent(display)

    def mark(self) -> int:
        return len(self.agent.log)

    def grab(self) -> None:
        self.agent.send(GRAB, bytes(4) + (1).to_bytes(4, "little"))

    def answer(self, data: bytes | None) -> None:
        self.agent.auto_answer = data

    def request_time(self, mark: int) -> float:
        return self.agent.wait(REQUEST, mark)[0]

    def grab_time(self, mark: int) -> float:
        return self.agent.wait(GRAB, mark)[0]

    def ask(self) -> tuple[float, float, bytes]:
        mark = self.mark()
        t0 = time.perf_counter()
        self.agent.send(REQUEST, bytes(4) + (1).to_bytes(4, "little"))
        t_data, payload = self.agent.wait(CLIPBOARD, mark)
        return t0, t_data, payload[8:]

    def close(self) -> None:
        self.agent.close()

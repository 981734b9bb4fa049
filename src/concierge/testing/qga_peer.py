"""A real qemu-ga to compare against, and a raw byte-level QGA client for tests and benchmarks.

:class:`QemuGa` starts the stock ``qemu-ga`` on a unix-listen socket in a private state dir
(never on a virtio port, never as a system service) and kills it on :meth:`QemuGa.stop`.
:class:`RawClient` speaks bytes, so tests can send exactly the same stream to qemu-ga and to
Concierge and compare the answers byte for byte. Standard library only (no concierge imports).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

DELIM = b"\xff"


def find_qemu_ga() -> str | None:
    """Path of the qemu-ga binary, or None when the package is not installed."""
    for candidate in (shutil.which("qemu-ga"), "/usr/sbin/qemu-ga", "/usr/bin/qemu-ga"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def wait_for_socket(path: Path, timeout_s: float = 10.0) -> None:
    """Wait until a unix socket at ``path`` accepts connections."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as probe:
            try:
                probe.connect(str(path))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nothing listens on {path}") from None
        time.sleep(0.005)


class QemuGa:
    """The stock qemu-ga serving one unix-listen socket from a throwaway state dir."""

    def __init__(self, binary: str | None = None, extra_args: tuple[str, ...] = ()) -> None:
        found = binary or find_qemu_ga()
        if found is None:
            raise FileNotFoundError("qemu-ga not found (apt install qemu-guest-agent)")
        self.binary = found
        self.extra_args = extra_args
        self._tmp = tempfile.TemporaryDirectory(prefix="qga-peer-")
        self.state_dir = Path(self._tmp.name)
        self.socket_path = self.state_dir / "qga.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> QemuGa:
        """Start qemu-ga and wait until its socket accepts connections."""
        cmd = [
            self.binary,
            "-m",
            "unix-listen",
            "-p",
            str(self.socket_path),
            "-t",
            str(self.state_dir),
            "-f",
            str(self.state_dir / "qemu-ga.pid"),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while not self.socket_path.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"qemu-ga exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("qemu-ga did not create its socket")
            time.sleep(0.002)
        wait_for_socket(self.socket_path, max(0.1, deadline - time.monotonic()))
        return self

    def stop(self) -> None:
        """Terminate qemu-ga (kill if it does not exit) and remove the state dir."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        self._tmp.cleanup()

    def __enter__(self) -> QemuGa:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def fenced_exchange(path: Path | str, payload: bytes, fence_ids: tuple[int, int] = (4242, 4343)) -> bytes:
    """Every byte an agent sends in answer to ``payload``, on a fresh connection.

    The payload is fenced by two 0xFF + ``guest-sync-delimited`` exchanges, so the result is
    deterministic whatever state the agent's parser was in and however the payload ends: the
    bytes returned end with the closing fence's ``\xff{"return": ID}\n``. Send the same payload
    to two agents and compare the results byte for byte.
    """
    with RawClient(path) as client:
        client.resync(fence_ids[0])
        client.send(payload)
        client.send(DELIM + b'{"execute":"guest-sync-delimited","arguments":{"id":%d}}' % fence_ids[1])
        want = DELIM + b'{"return": %d}\n' % fence_ids[1]
        out = b""
        while not out.endswith(want):
            out += client.read_line()
        return out


class RawClient:
    """A byte-level QGA client over a unix (or any stream) socket."""

    def __init__(self, path: Path | str, timeout_s: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout_s)
        self.sock.connect(str(path))
        self.path = Path(path)
        self.buf = b""

    def send(self, data: bytes) -> None:
        """Write all of ``data``."""
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        """Return the next reply line including its ``\\n`` (and a leading 0xFF if any)."""
        end = self.buf.find(b"\n")
        if end < 0:
            pending = bytearray(self.buf)  # a 64 MiB reply: no quadratic re-copying
            while end < 0:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    self.buf = bytes(pending)
                    raise EOFError("peer closed the connection")
                scanned = len(pending)
                pending += chunk
                end = pending.find(b"\n", scanned)
            self.buf = bytes(pending)
        line, self.buf = self.buf[: end + 1], self.buf[end + 1 :]
        return line

    def read_lines(self, count: int) -> list[bytes]:
        """Read exactly ``count`` reply lines."""
        return [self.read_line() for _ in range(count)]

    def exchange(self, data: bytes, count: int = 1) -> list[bytes]:
        """Send ``data`` and read ``count`` reply lines."""
        self.send(data)
        return self.read_lines(count)

    def drain(self, quiet_s: float = 0.2) -> bytes:
        """Read whatever arrives until the peer stays quiet for ``quiet_s`` seconds."""
        old = self.sock.gettimeout()
        self.sock.settimeout(quiet_s)
        data, self.buf = self.buf, b""
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            pass
        finally:
            self.sock.settimeout(old)
        return data

    def resync(self, sync_id: int = 4242) -> None:
        """0xFF + guest-sync-delimited, then skip everything up to the matching reply."""
        self.send(DELIM + b'{"execute":"guest-sync-delimited","arguments":{"id":%d}}\n' % sync_id)
        want = b'{"return": %d}\n' % sync_id
        while True:
            line = self.read_line()
            if line.rsplit(DELIM, 1)[-1] == want:
                return

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

"""Benchmark of the oVirt front-end and the SSO credential socket; prints a markdown table.

Run: PYTHONPATH=src python tools/bench/bench_ovirt.py
No stock anchor: the old ovirt-guest-agent is Python 2 only and not installable here, so the
figures are absolute (and vdsm's own limits are given for scale: heartbeat every 5 s, 120 s
responsiveness, 10 s lifecycle reply window).
"""

from __future__ import annotations

import os
import pty
import shutil
import socket
import statistics
import sys
import tempfile
import time
import tty
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "ovirt"))

from ovirt_harness import FakePeers, HostPump, start_frontend

from concierge.actors.sso import credsock
from concierge.actors.sso.credsock import CredentialSocket
from concierge.actors.sso.vault import CredentialVault
from concierge.logs import Secret
from concierge.testing.polling_context import PollingFakeContext
from concierge.testing.vdsm_host import VdsmHost
from concierge.transport.ovirt import render
from concierge.transport.ovirt.codec import LineReader, encode

MEMORY = {
    "total": 8 << 30,
    "free": 4 << 30,
    "cached": 1 << 30,
    "buffers": 1 << 20,
    "swap_total": 2 << 30,
    "swap_free": 1 << 30,
    "swap_in": 1,
    "swap_out": 2,
    "pageflt": 3,
    "majflt": 4,
}


def codec_rates(n: int = 20000) -> tuple[float, float, float, int]:
    args = render.heartbeat(MEMORY, {}, 3)
    t0 = time.perf_counter()
    lines = [encode("heartbeat", args) for _ in range(n)]
    enc = n / (time.perf_counter() - t0)
    data = b"".join(lines)
    reader = LineReader()
    t0 = time.perf_counter()
    count = sum(1 for _ in reader.feed(data))
    dec = count / (time.perf_counter() - t0)
    host = VdsmHost()
    t0 = time.perf_counter()
    host.feed(data)
    vdsm = n / (time.perf_counter() - t0)
    return enc, dec, vdsm, len(lines[0])


def time_to_full_state(rounds: int = 5) -> list[float]:
    out = []
    for _ in range(rounds):
        host_fd, guest_fd = pty.openpty()
        tty.setraw(host_fd)
        tty.setraw(guest_fd)
        pump = HostPump(host_fd)
        t0 = time.perf_counter()
        ctx = start_frontend(FakePeers(), fd=guest_fd, heartbeat_s=0.05)
        pump.wait(
            lambda h: (
                h.effective_api_version == 3
                and bool(h.state.guest_os_info)
                and bool(h.state.disks_usage)
                and h.state.cpu_count > 0
            )
        )
        out.append((time.perf_counter() - t0) * 1000)
        ctx.close()
        pump.close()
        os.close(host_fd)
        os.close(guest_fd)
    return out


def credential_exchange(rounds: int = 200) -> list[float]:
    base = Path(tempfile.mkdtemp(prefix="bench-sso-"))
    ctx = PollingFakeContext("sso", {}, runtime_dir=base)
    vault = CredentialVault(time.monotonic, 20.0)
    server = CredentialSocket(
        ctx,
        vault,
        base / "sso",
        dir_mode=0o700,
        socket_mode=0o600,
        allowed_uids=(os.geteuid(),),
        client_timeout_s=3.0,
    )
    ctx.call_soon(server.open)
    while not server.path.exists():
        time.sleep(0.01)
    out = []
    for _ in range(rounds):
        token = vault.park("alice", Secret("bench-password")).reveal().encode()
        t0 = time.perf_counter()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(server.path))
            s.sendall(credsock.build_request(token))
            data = s.recv(4096)
        out.append((time.perf_counter() - t0) * 1000)
        assert data[6] == credsock.OK
    ctx.call_soon(server.close)
    ctx.close()
    shutil.rmtree(base, ignore_errors=True)
    return out


def main() -> None:
    enc, dec, vdsm, size = codec_rates()
    full = time_to_full_state()
    cred = credential_exchange()
    print("| measurement | value |")
    print("|---|---|")
    print(f"| heartbeat line size (v3, memory-stat) | {size} bytes |")
    print(f"| encode heartbeat lines | {enc:,.0f} lines/s |")
    print(f"| decode lines (LineReader) | {dec:,.0f} lines/s |")
    print(f"| vdsm-faithful host parses our lines | {vdsm:,.0f} lines/s |")
    print(
        f"| port open -> full v3 state on host (pty, fake monitor; median of {len(full)}) "
        f"| {statistics.median(full):.0f} ms (min {min(full):.0f}, max {max(full):.0f}) |"
    )
    q = statistics.quantiles(cred, n=20)
    print(
        f"| credential socket token->credentials round trip (median / p95, {len(cred)} runs) "
        f"| {statistics.median(cred):.2f} ms / {q[18]:.2f} ms |"
    )
    print("| stock anchor (ovirt-guest-agent 1.0.16) | not measurable: Python 2 only |")


if __name__ == "__main__":
    main()

"""Benchmark: guest-file-read of a 32 MiB file in 4 MiB chunks, ours vs the stock qemu-ga.

Both agents are driven the same way: raw QGA JSON over a unix socket, one request per line.
Ours is the GuestOpsNode in a FakeContext behind a minimal QGA line shim in its own process
(``--serve``), or the real agent's socket with ``--socket PATH``. Prints a markdown table with
throughput, ratio to qemu-ga, CPU and the serving process's memory before/after.
Usage: PYTHONPATH=src python tools/bench/bench_guestops.py [--runs 3] [--socket PATH]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZE = 32 * 1024 * 1024
CHUNK = 4 * 1024 * 1024


def serve(sock_path: str, state_dir: str) -> None:
    """The shim: our node behind a one-connection-at-a-time QGA line server."""
    from concierge.actors.guestops.node import GuestOpsNode
    from concierge.testing.context import FakeContext
    from concierge.transport.qga.commands.guestops import ROUTES

    routes = {r.command: r for r in ROUTES}
    ctx = FakeContext("guestops", {"state_dir": state_dir})
    ctx.run_node(GuestOpsNode)
    server = socket.socket(socket.AF_UNIX)
    server.bind(sock_path)
    server.listen(1)
    while True:
        conn, _ = server.accept()
        with conn, conn.makefile("rb") as reader:
            for line in reader:
                req = json.loads(line)
                if req["execute"] == "quit":
                    ctx.close()
                    return
                if req["execute"] == "guest-ping":
                    conn.sendall(b'{"return": {}}\n')
                    continue
                route = routes[req["execute"]]
                reply = ctx.ask(route.request, req.get("arguments", {}), timeout_s=60)
                out: Any = (
                    {"return": route.render(reply.body)}
                    if reply.ok
                    else {"error": {"class": "GenericError", "desc": reply.message}}
                )
                conn.sendall(json.dumps(out).encode() + b"\n")


class Client:
    def __init__(self, path: str) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self.reader = self.sock.makefile("rb")

    def cmd(self, execute: str, **arguments: Any) -> Any:
        self.sock.sendall(json.dumps({"execute": execute, "arguments": arguments}).encode() + b"\n")
        reply = json.loads(self.reader.readline())
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["return"]

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def proc_mem(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_all(client: Client, path: str) -> int:
    handle = client.cmd("guest-file-open", path=path)
    got = 0
    while True:
        reply = client.cmd("guest-file-read", handle=handle, count=CHUNK)
        got += len(base64.b64decode(reply["buf-b64"]))
        if reply["eof"]:
            break
    client.cmd("guest-file-close", handle=handle)
    return got


def measure(name: str, sock: str, pid: int, path: str, runs: int) -> dict[str, Any]:
    client = Client(sock)
    client.cmd("guest-ping") if name != "qemu-ga" else None
    before = proc_mem(pid)
    cpu0 = proc_cpu(pid)
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        assert read_all(client, path) == SIZE
        rates.append(SIZE / (1024 * 1024) / (time.perf_counter() - start))
    cpu = (proc_cpu(pid) - cpu0) / runs
    after = proc_mem(pid)
    client.close()
    return {"name": name, "rates": rates, "cpu": cpu, "before": before, "after": after}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--socket", help="a running concierge agent's QGA unix socket")
    parser.add_argument("--agent-pid", type=int, help="pid of the guestops actor behind --socket")
    parser.add_argument("--serve", nargs=2, metavar=("SOCK", "STATE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-guestops-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        data_path = tmp / "data.bin"
        data_path.write_bytes(os.urandom(SIZE))
        results = []
        qga = shutil.which("qemu-ga") or "/usr/sbin/qemu-ga"
        if os.path.exists(qga):
            (tmp / "qga").mkdir()
            qsock = str(tmp / "qga.sock")
            procs.append(
                subprocess.Popen(
                    [qga, "-m", "unix-listen", "-p", qsock, "-t", str(tmp / "qga"), "-f", str(tmp / "qga" / "pid")]
                )
            )
            time.sleep(0.2)
            results.append(measure("qemu-ga", qsock, procs[-1].pid, str(data_path), args.runs))
        if args.socket:
            pid = args.agent_pid or 0
            results.append(measure("concierge agent", args.socket, pid, str(data_path), args.runs))
        else:
            osock = str(tmp / "ours.sock")
            procs.append(
                subprocess.Popen([sys.executable, __file__, "--serve", osock, str(tmp / "ours")], env=dict(os.environ))
            )
            results.append(
                measure("concierge guestops (node + QGA line shim)", osock, procs[-1].pid, str(data_path), args.runs)
            )
            Client(osock).sock.sendall(b'{"execute": "quit"}\n')
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    anchor = next((r for r in results if r["name"] == "qemu-ga"), None)
    base = statistics.median(anchor["rates"]) if anchor else None
    print(f"guest-file-read, {SIZE >> 20} MiB file, {CHUNK >> 20} MiB chunks, {args.runs} runs, median (min-max)\n")
    print(
        "| agent | MiB/s | ratio vs qemu-ga | CPU s per 32 MiB | RSS before kB | RSS after kB | peak RSS (VmHWM) kB |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        med = statistics.median(r["rates"])
        ratio = f"{med / base:.2f}" if base else "-"
        print(
            f"| {r['name']} | {med:.1f} ({min(r['rates']):.1f}-{max(r['rates']):.1f}) | {ratio} "
            f"| {r['cpu']:.2f} | {r['before'].get('VmRSS', 0):,} | "
            f"{r['after'].get('VmRSS', 0):,} | {r['after'].get('VmHWM', 0):,} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

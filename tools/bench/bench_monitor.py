"""Benchmark of the monitor actor: each probe cold (fresh node, empty caches) and warm,
in-process (handler + QGA rendering + JSON encoding), against the real qemu-ga over its raw
unix socket in the same run. Prints a markdown table.

Usage: PYTHONPATH=src python tools/bench/bench_monitor.py [--n 300]
Our figures exclude the agent's transport hop (host socket -> transport actor -> ZeroMQ ->
monitor); qemu-ga's include its socket round trip and JSON parsing in the client.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from concierge.actors.monitor.node import MonitorNode
from concierge.runtime.node import Incoming
from concierge.testing.context import FakeContext
from concierge.transport.qga.commands.monitor import ROUTES

_QGA_ROUTES = {r.command: r for r in ROUTES}
COMMANDS = [
    "guest-get-osinfo",
    "guest-get-host-name",
    "guest-get-timezone",
    "guest-get-users",
    "guest-network-get-interfaces",
    "guest-get-fsinfo",
    "guest-get-disks",
    "guest-get-diskstats",
    "guest-get-cpustats",
]
EXTRA = [("monitor.memory", None), ("monitor.applications", None), ("monitor.interfaces", {"profile": "default"})]


def _caller(node: MonitorNode, kind: str, body: Any, render: Callable[[Any], Any]) -> Callable[[], str]:
    func, _ = node._handlers[kind]  # the benchmark drives the handler directly

    def call() -> str:
        return json.dumps(render(func(Incoming(kind="req", type=kind, body=body, src="bench"))))

    return call


def _fresh(settings: dict[str, Any]) -> tuple[FakeContext, MonitorNode]:
    ctx = FakeContext("monitor", settings)
    node = ctx.run_node(MonitorNode)
    assert isinstance(node, MonitorNode)
    return ctx, node


def _timeit(call: Callable[[], Any], n: int) -> tuple[float, float]:
    for _ in range(min(20, n)):
        call()
    samples = []
    for _ in range(n):
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


class Qga:
    """qemu-ga on a unix socket, raw JSON lines."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("qemu-ga") or "/usr/sbin/qemu-ga"
        sock = tmp / "qga.sock"
        self.proc = subprocess.Popen(
            [binary, "-m", "unix-listen", "-p", str(sock), "-t", str(tmp)],
            stderr=subprocess.DEVNULL,
        )
        while not sock.exists():
            time.sleep(0.01)
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(sock))
        self.stream = self.sock.makefile("rwb")

    def call(self, command: str) -> Any:
        self.stream.write(json.dumps({"execute": command}).encode() + b"\n")
        self.stream.flush()
        return json.loads(self.stream.readline())

    def close(self) -> None:
        self.sock.close()
        self.proc.terminate()
        self.proc.wait(5)


def main() -> None:
    """Run and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    settings: dict[str, Any] = {"logind_bus": "none"}
    rows: list[str] = []
    ctx, node = _fresh(settings)
    with tempfile.TemporaryDirectory() as tmp:
        qga = Qga(Path(tmp))
        try:
            for command in COMMANDS:
                route = _QGA_ROUTES[command]
                body = route.to_request({})
                cold_ctx, cold_node = _fresh(settings)
                started = time.perf_counter_ns()
                _caller(cold_node, route.request, body, route.render)()
                cold = (time.perf_counter_ns() - started) / 1000
                cold_ctx.close()
                p50, p99 = _timeit(_caller(node, route.request, body, route.render), args.n)
                q50, q99 = _timeit(lambda c=command: qga.call(c), args.n)  # type: ignore[misc]
                rows.append(
                    f"| {command} | {cold:,.0f} | {p50:,.0f} | {p99:,.0f} | {q50:,.0f} | "
                    f"{q99:,.0f} | {p50 / q50:.2f}x |"
                )
            for kind, body in EXTRA:
                cold_ctx, cold_node = _fresh(settings)
                started = time.perf_counter_ns()
                _caller(cold_node, kind, body, lambda b: b)()
                cold = (time.perf_counter_ns() - started) / 1000
                cold_ctx.close()
                p50, p99 = _timeit(_caller(node, kind, body, lambda b: b), args.n)
                rows.append(
                    f"| {kind} {json.dumps(body) if body else ''} | {cold:,.0f} | {p50:,.0f} | {p99:,.0f} | - | - | - |"
                )
        finally:
            qga.close()
            ctx.close()
    print(f"monitor probes, n={args.n} warm samples each, microseconds\n")
    print("| probe | ours cold | ours warm p50 | ours warm p99 | qemu-ga p50 | qemu-ga p99 | warm p50 ratio |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

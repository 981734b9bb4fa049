"""Foundation benchmarks: ipc round trip between two actors, SIGKILL -> serving again,
start -> all RUNNING, idle PSS of the supervisor and of a minimal actor.

Run: ``.venv/bin/python tools/bench/bench_foundation.py`` (prints a markdown table).
Not a test: numbers vary with machine load; docs/benchmarks.md records a run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from concierge.testing.harness import AgentHarness, catalog
from concierge.testing.rpc import ActorClient

ECHO = {"entry": "concierge.testing.nodes:EchoNode"}
INLINE_ECHO = {"entry": "concierge.testing.nodes:InlineEchoNode"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _floor_echo(kind: str, path: str, ready: Any) -> None:
    """Child of :func:`floor`: echo every message back (no Concierge code)."""
    if kind == "zmq":
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.bind(f"ipc://{path}")
        ready.set()
        while True:
            frames = sock.recv_multipart()
            sock.send_multipart(frames)
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(path)
    ready.set()
    while True:
        data, peer = dgram.recvfrom(65536)
        dgram.sendto(data, peer)


def floor(kind: str, tmp: Path, count: int) -> list[float]:
    """Round trips (µs) between two bare Python processes: ZeroMQ DEALER/ROUTER over ipc, or
    unix datagrams, each side blocking in its receive: what the machine allows before any of
    our code runs."""
    path = str(tmp / f"floor-{kind}")
    ready = mp.Event()
    child = mp.Process(target=_floor_echo, args=(kind, path, ready), daemon=True)
    child.start()
    ready.wait(10)
    samples = []
    try:
        if kind == "zmq":
            ctx = zmq.Context()
            sock = ctx.socket(zmq.DEALER)
            sock.connect(f"ipc://{path}")
            for _ in range(count):
                t = time.perf_counter_ns()
                sock.send(b"x" * 40)
                sock.recv()
                samples.append((time.perf_counter_ns() - t) / 1000)
            sock.close(0)
            ctx.term()
        else:
            me = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            me.bind(path + ".c")
            me.connect(path)
            for _ in range(count):
                t = time.perf_counter_ns()
                me.send(b"x" * 40)
                me.recv(65536)
                samples.append((time.perf_counter_ns() - t) / 1000)
            me.close()
    finally:
        child.kill()
    return samples[len(samples) // 10 :]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, label in (
            ("zmq", "floor: bare pyzmq DEALER/ROUTER ipc round trip, two processes"),
            ("dgram", "floor: bare unix datagram round trip, two processes"),
        ):
            us = floor(kind, Path(tmp), args.count)
            rows.append((label, f"p50 {pct(us, 0.5):.1f} µs, p99 {pct(us, 0.99):.1f} µs", "-"))
        nospin_root = Path(tmp) / "nospin"
        nospin_root.mkdir()
        nospin_extra = "[agent]\nlog_level='warning'\nlane_spin_us = 0\n"
        nospin = AgentHarness(nospin_root, catalog({"a": ECHO, "c": INLINE_ECHO}, extra=nospin_extra))
        nospin.start()
        try:
            with ActorClient(nospin.runtime_dir, "bench") as client:
                samples = client.request("a", "pingpong", {"dst": "c", "count": args.count}, timeout_s=120).unwrap()
                us = [s / 1000 for s in samples[len(samples) // 10 :]]
                label = "the same a->c with lane_spin_us = 0 (the requester sleeps until the reply)"
                nospin_row = (label, f"p50 {pct(us, 0.5):.1f} µs, p99 {pct(us, 0.99):.1f} µs", "-")
        finally:
            nospin.stop()
        extra = "[agent]\nlog_level='warning'\n[supervisor]\nintensity = 1000\nstable_after_s = 0.5\n"
        agent = AgentHarness(Path(tmp), catalog({"a": ECHO, "b": ECHO, "c": INLINE_ECHO}, extra=extra))
        agent.start()
        try:
            with ActorClient(agent.runtime_dir, "bench") as client:
                for dst, label in (
                    ("c", "ipc request/reply a->c (bridge to bridge, answered on c's bridge thread)"),
                    ("b", "ipc request/reply a->b (bridge to bridge, answered by a pykka actor on b)"),
                ):
                    body = {"dst": dst, "count": args.count}
                    samples = client.request("a", "pingpong", body, timeout_s=120).unwrap()
                    us = [s / 1000 for s in samples[len(samples) // 10 :]]
                    rows.append((label, f"p50 {pct(us, 0.5):.1f} µs, p99 {pct(us, 0.99):.1f} µs", "p50 <= 60 µs"))
                    if dst == "c":
                        rows.append(nospin_row)
                ext = []
                for _ in range(2000):
                    t = time.perf_counter_ns()
                    client.request("b", "echo", 1).unwrap()
                    ext.append((time.perf_counter_ns() - t) / 1000)
                ext = ext[200:]
                rows.append(
                    (
                        "ipc request/reply client->b (pykka actor hop)",
                        f"p50 {pct(ext, 0.5):.1f} µs, p99 {pct(ext, 0.99):.1f} µs",
                        "-",
                    )
                )
                recover = []
                for _ in range(args.kills):
                    pid = client.request("b", "pid").unwrap()
                    t = time.monotonic()
                    os.kill(pid, signal.SIGKILL)
                    while time.monotonic() - t < 30:
                        reply = client.request("b", "pid", timeout_s=0.05)
                        if reply.ok and reply.body != pid:
                            break
                    recover.append((time.monotonic() - t) * 1000)
                    time.sleep(1.0)  # stable again: every kill meets the first backoff step
                rows.append(
                    (
                        "SIGKILL -> actor serving again",
                        f"median {statistics.median(recover):.0f} ms, max {max(recover):.0f} ms",
                        "<= 200 ms",
                    )
                )
            metrics = json.loads(agent.cli("--json", "metrics").stdout)
            sup = metrics["supervisor"]["pss_bytes"] / 1e6
            actor = min(a["pss_bytes"] for a in metrics["actors"]) / 1e6
            rows.append(("idle PSS supervisor / minimal actor", f"{sup:.1f} MB / {actor:.1f} MB", "-"))
        finally:
            agent.stop()
        starts: list[float] = []
        execs: list[float] = []
        for i in range(args.starts):
            root = Path(tmp) / f"s{i}"
            root.mkdir()
            cat = catalog(dict.fromkeys(("a", "b", "c", "d", "e", "f", "g"), ECHO))
            agent = AgentHarness(root, cat, args=("--log-format", "json"))
            agent.start()
            agent.stop()
            text = agent.log_path.read_text()
            match = re.search(r'"elapsed_ms":([0-9.]+)', text)
            if match:
                starts.append(float(match.group(1)))
            match = re.search(r'"since_exec_ms":([0-9.]+)', text)
            if match:
                execs.append(float(match.group(1)))
        rows.append(
            ("start -> all 7 actors RUNNING (echo nodes)", f"median {statistics.median(starts):.0f} ms", "<= 300 ms")
        )
        rows.append(
            (
                "the same from the supervisor's exec (interpreter start and imports included)",
                f"median {statistics.median(execs):.0f} ms" if execs else "-",
                "-",
            )
        )
    print("| measure | result | target |\n|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")


if __name__ == "__main__":
    main()

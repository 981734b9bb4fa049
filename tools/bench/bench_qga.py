"""Benchmark a QGA agent against the stock qemu-ga, same client, same run; prints markdown.

Usage:
  bench_qga.py                                   # ours = transport actor alone, fake capabilities
  bench_qga.py --socket /run/concierge/channels/qga.sock     # an agent that is already running
  bench_qga.py --agent-cmd 'concierge --channel qga=unix-listen:{sock}'   # started per phase

Measures: round-trip p50/p99 of ping, info, osinfo, interfaces, fsinfo, disks, memory-blocks;
pipelined pings per second; start -> first ping answered; ping latency while a slow command is
in flight (qemu-ga: guest-fsfreeze-freeze-list of a mountpoint that does not exist, with a
freeze hook that sleeps --slow-s; nothing is frozen).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from concierge.testing.qga_peer import QemuGa, RawClient, find_qemu_ga, wait_for_socket

COMMANDS = [
    ("guest-ping", 3000),
    ("guest-info", 1000),
    ("guest-get-osinfo", 1000),
    ("guest-network-get-interfaces", 1000),
    ("guest-get-fsinfo", 500),
    ("guest-get-disks", 500),
    ("guest-get-memory-blocks", 200),
]


#: blocks qemu-ga's main loop in its fsfreeze hook; the mountpoint matches nothing, so nothing
#: is ever frozen (qemu-ga only freezes listed mountpoints)
SLOW_THEIRS = b'{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":["/nonexistent/concierge-bench"]}}'


def pct(values: list[float], q: float) -> float:
    """Percentile (nearest rank) of microsecond samples."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(path: Path, command: str, count: int) -> tuple[float, float, str]:
    """p50/p99 in microseconds and the outcome of one sequential request loop."""
    request = json.dumps({"execute": command}).encode()
    with RawClient(path, timeout_s=30) as client:
        client.resync()
        first = client.exchange(request)[0]
        outcome = "ok" if b'"return"' in first else json.loads(first)["error"]["class"]
        for _ in range(min(100, count // 10)):
            client.exchange(request)
        samples = []
        for _ in range(count):
            start = time.perf_counter_ns()
            client.send(request)
            client.read_line()
            samples.append((time.perf_counter_ns() - start) / 1000)
    return pct(samples, 0.5), pct(samples, 0.99), outcome


def pipelined(path: Path, total: int = 20000, batch: int = 100) -> float:
    """Pings per second with ``batch`` requests per write."""
    request = b'{"execute":"guest-ping"}' * batch
    with RawClient(path, timeout_s=30) as client:
        client.resync()
        start = time.perf_counter()
        for _ in range(total // batch):
            client.send(request)
            client.read_lines(batch)
        return total / (time.perf_counter() - start)


def ping_while_slow(path: Path, slow_request: bytes, release: Callable[[], None], rounds: int) -> list[float]:
    """Latency of a ping sent right after a slow command, per round (microseconds)."""
    samples = []
    with RawClient(path, timeout_s=30) as client:
        client.resync()
        for _ in range(rounds):
            client.send(slow_request)
            start = time.perf_counter_ns()
            client.send(b'{"execute":"guest-ping","id":"p"}')
            while True:
                line = client.read_line()
                if line == b'{"return": {}, "id": "p"}\n':
                    break
            samples.append((time.perf_counter_ns() - start) / 1000)
            release()
            client.resync()
    return samples


def start_to_first_ping(cmd: list[str], sock: Path, runs: int) -> float:
    """Median milliseconds from exec to the first answered ping."""
    results = []
    for _ in range(runs):
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_socket(sock, timeout_s=30)
            with RawClient(sock) as client:
                client.exchange(b'{"execute":"guest-ping"}')
            results.append((time.perf_counter() - start) * 1000)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return statistics.median(results)


@contextlib.contextmanager
def ours(args: argparse.Namespace, tmp: Path) -> Iterator[tuple[Path, list[str] | None]]:
    """Our agent: an existing socket, a command, or the standalone transport actor."""
    if args.socket:
        yield Path(args.socket), None
        return
    sock = tmp / "ours.sock"
    if args.agent_cmd:
        cmd = [part.replace("{sock}", str(sock)) for part in shlex.split(args.agent_cmd)]
    else:
        cmd = [
            sys.executable,
            "-m",
            "concierge.testing.qga_standalone",
            "--socket",
            str(sock),
            "--fake-capabilities",
            "--slow-s",
            str(args.slow_s),
        ]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_socket(sock, timeout_s=30)
        yield sock, cmd
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def row(label: str, theirs: tuple[float, float], ours_: tuple[float, float], note: str) -> str:
    """One markdown row with p50/p99 and the concierge/qemu-ga ratios."""
    (t50, t99), (o50, o99) = theirs, ours_
    return f"| {label} | {t50:.1f} | {t99:.1f} | {o50:.1f} | {o99:.1f} | {o50 / t50:.3f} | {o99 / t99:.3f} | {note} |"


def theirs_while_slow(path: Path, rounds: int) -> list[float]:
    """qemu-ga: a ping queued behind a freeze whose hook sleeps."""
    samples = []
    with RawClient(path, timeout_s=30) as client:
        client.resync()
        for _ in range(rounds):
            client.send(SLOW_THEIRS)
            start = time.perf_counter_ns()
            client.send(b'{"execute":"guest-ping","id":"p"}')
            while client.read_line() != b'{"return": {}, "id": "p"}\n':
                pass
            samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def main() -> int:
    """Run every phase and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket", help="socket of an already running agent")
    parser.add_argument("--agent-cmd", help="command starting our agent; {sock} is replaced")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply request counts")
    parser.add_argument("--slow-s", type=float, default=0.2)
    parser.add_argument(
        "--slow-json",
        default='{"execute":"guest-fstrim"}',
        help="our slow request (fake capabilities: guest-fstrim waits --slow-s)",
    )
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    binary = find_qemu_ga()
    if binary is None:
        print("qemu-ga not found (apt install qemu-guest-agent)", file=sys.stderr)
        return 1
    rows = [
        "| measurement | qemu-ga p50 | qemu-ga p99 | concierge p50 | concierge p99 "
        "| ratio p50 | ratio p99 | concierge outcome |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-qga-") as tmp_name:
        tmp = Path(tmp_name)
        hook = tmp / "sleepy-hook"
        hook.write_text(f"#!/bin/sh\nsleep {args.slow_s}\n")
        hook.chmod(0o755)
        with (
            QemuGa(binary) as ga,
            QemuGa(binary, extra_args=(f"-F{hook}",)) as slow_ga,
            ours(args, tmp) as (our_sock, our_cmd),
        ):
            for command, count in COMMANDS:
                n = max(20, int(count * args.scale))
                t50, t99, _ = latency(ga.socket_path, command, n)
                o50, o99, outcome = latency(our_sock, command, n)
                rows.append(row(f"{command} (µs, n={n})", (t50, t99), (o50, o99), outcome))
            total = max(1000, int(20000 * args.scale))
            theirs_rate = pipelined(ga.socket_path, total)
            ours_rate = pipelined(our_sock, total)
            rows.append(
                f"| pipelined pings (req/s, batches of 100) | {theirs_rate:,.0f} | "
                f"| {ours_rate:,.0f} | | {theirs_rate / ours_rate:.3f} (time ratio) | | ok |"
            )
            theirs = theirs_while_slow(slow_ga.socket_path, args.rounds)
            ours_samples = ping_while_slow(
                our_sock, args.slow_json.encode(), lambda: time.sleep(args.slow_s), args.rounds
            )
            rows.append(
                row(
                    f"ping while a {args.slow_s:g} s command runs (µs, n={args.rounds})",
                    (pct(theirs, 0.5), pct(theirs, 0.99)),
                    (pct(ours_samples, 0.5), pct(ours_samples, 0.99)),
                    "ok",
                )
            )
        runs = max(3, int(10 * args.scale))
        sock = tmp / "s.sock"
        theirs_ms = start_to_first_ping(
            [
                binary,
                "-m",
                "unix-listen",
                "-p",
                str(sock),
                "-t",
                str(tmp),
                "-f",
                str(tmp / "s.pid"),
            ],
            sock,
            runs,
        )
        label = f"start -> first ping (ms, median of {runs})"
        if our_cmd is not None:
            start_sock = tmp / "start.sock"
            cmd = [part.replace(str(tmp / "ours.sock"), str(start_sock)) for part in our_cmd]
            ours_ms = start_to_first_ping(cmd, start_sock, runs)
            ratio = ours_ms / theirs_ms
            rows.append(f"| {label} | {theirs_ms:.2f} | | {ours_ms:.2f} | | {ratio:.2f} | | ok |")
        else:
            rows.append(f"| {label} | {theirs_ms:.2f} | | n/a | | | | |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Memory of the agent under routed QGA traffic, against qemu-ga in the same run; prints markdown.

Usage:
  bench_routed_growth.py [--requests 100000] [--command guest-get-timezone]

Why: every routed command arms a deadline guard in the transport; a cancelled guard that stayed
in the bridge's timer heap until its deadline held the request's state meanwhile (issue 14:
+14 MB PSS per 100k routed requests). This sends ``--requests`` routed commands in pipelined
batches over one connection to the whole agent (transport + monitor, each its own process) and
to qemu-ga, and reports the PSS of each process after a warm-up and at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from concierge.supervisor.procstat import sample
from concierge.testing.harness import AgentHarness, catalog
from concierge.testing.qga_peer import QemuGa, RawClient, wait_for_socket

BATCH = 50  # below the transport's max_pending (64)


def pss_mb(pid: int) -> float:
    """Proportional set size of one process (smaps_rollup)."""
    return sample(pid).get("pss_bytes", 0) / 1e6


def drive(sock: Path, command: str, total: int) -> None:
    """``total`` requests in batches of BATCH, each batch read back before the next."""
    request = json.dumps({"execute": command}).encode() + b"\n"
    with RawClient(sock, timeout_s=60) as client:
        client.resync()
        done = 0
        while done < total:
            count = min(BATCH, total - done)
            lines = client.exchange(request * count, count)
            if b'"return"' not in lines[-1]:
                raise SystemExit(f"{command} failed: {lines[-1]!r}")
            done += count


def measure(pids: dict[str, int], sock: Path, command: str, total: int) -> list[tuple[str, float, float]]:
    """PSS of each process after a 5k warm-up and after ``total`` more requests."""
    drive(sock, command, 5000)
    time.sleep(1.0)
    before = {name: pss_mb(pid) for name, pid in pids.items()}
    drive(sock, command, total)
    time.sleep(1.0)
    return [(name, before[name], pss_mb(pid)) for name, pid in pids.items()]


def main() -> int:
    """Run both agents and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--command", default="guest-get-timezone", help="a command the transport routes")
    args = parser.parse_args()
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="cc-growth-") as tmp:
        root = Path(tmp)
        sock = root / "qga.sock"
        actors = {
            "transport": {"entry": "concierge.actors.hostlink.node:HostLinkNode", "essential": True},
            "monitor": {"entry": "concierge.actors.monitor.node:MonitorNode"},
        }
        (root / "agent").mkdir()
        agent = AgentHarness(
            root / "agent", catalog(actors), args=("--log-format", "text", "--channel", f"qga=unix-listen:{sock}")
        )
        agent.start()
        try:
            wait_for_socket(sock)
            pids = {f"concierge {a}": int(agent.actor(a)["pid"]) for a in actors}
            rows += measure(pids, sock, args.command, args.requests)
        finally:
            agent.stop()
        with QemuGa() as stock:
            rows += measure({"qemu-ga": stock.proc.pid}, Path(stock.socket_path), args.command, args.requests)
    print(f"{args.requests} x {args.command}, batches of {BATCH}, one connection\n")
    print("| process | PSS MB after warm-up | PSS MB after | growth MB |\n|---|---|---|---|")
    for name, before, after in rows:
        print(f"| {name} | {before:.1f} | {after:.1f} | {after - before:+.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

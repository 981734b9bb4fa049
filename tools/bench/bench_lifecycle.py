"""Benchmark: freeze + thaw of a loop-mounted filesystem, lifecycle actor vs the stock qemu-ga.

Creates its own ext4 and xfs images (root needed), then for each runs N cycles of
``guest-fsfreeze-freeze-list [mnt]`` + ``guest-fsfreeze-thaw`` against qemu-ga (unix socket,
raw JSON client) and ``lifecycle.freeze`` + ``lifecycle.thaw`` against the actor (in-process
FakeContext: no transport hop), in the same run, interleaved per round. Prints a markdown table.

    PYTHONPATH=src python tools/bench/bench_lifecycle.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SIZES_MB = {"ext4": 64, "xfs": 320}


@contextlib.contextmanager
def loop_fs(fstype: str) -> Iterator[Path]:
    """A fresh loop-mounted filesystem in a tmp dir; always cleaned up."""
    base = Path(tempfile.mkdtemp(prefix=f"cc-bench-{fstype}-"))
    image, mnt = base / "fs.img", base / "mnt"
    mnt.mkdir()
    device = ""
    try:
        with open(image, "wb") as fh:
            fh.truncate(SIZES_MB[fstype] * 1024 * 1024)
        flags = ["-q", "-F"] if fstype == "ext4" else ["-q", "-f"]
        subprocess.run([f"mkfs.{fstype}", *flags, str(image)], check=True, capture_output=True)
        device = subprocess.run(
            ["losetup", "--find", "--show", str(image)], check=True, capture_output=True, text=True
        ).stdout.strip()
        subprocess.run(["mount", device, str(mnt)], check=True, capture_output=True)
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, check=False)
        if device:
            subprocess.run(["losetup", "-d", device], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


class Qga:
    """Raw line client for qemu-ga."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(str(path))
        self.buf = b""

    def cmd(self, execute: str, arguments: dict[str, Any] | None = None) -> Any:
        req: dict[str, Any] = {"execute": execute}
        if arguments is not None:
            req["arguments"] = arguments
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        while b"\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        line, self.buf = self.buf.split(b"\n", 1)
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["return"]


@contextlib.contextmanager
def qemu_ga() -> Iterator[tuple[Qga, subprocess.Popen[bytes]]]:
    """The stock agent on a private socket and state dir."""
    base = Path(tempfile.mkdtemp(prefix="cc-bench-qga-"))
    sock = base / "qga.sock"
    proc = subprocess.Popen(
        ["qemu-ga", "-m", "unix-listen", "-p", str(sock), "-t", str(base), "-f", str(base / "pid")],
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.02)
        client = Qga(sock)
        client.cmd("guest-sync", {"id": 1})
        yield client, proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


def timed(func: Callable[[], Any]) -> float:
    start = time.perf_counter()
    func()
    return (time.perf_counter() - start) * 1000.0


def summary(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return statistics.median(ordered), p90, ordered[-1]


def run_rounds(qga: Qga, ctx: Any, mnt: Path, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Interleaved rounds: qemu-ga then concierge, freeze-list / status / thaw each."""
    from concierge.actors.lifecycle import messages as m

    results: dict[str, dict[str, list[float]]] = {
        "qemu-ga": {"freeze": [], "thaw": [], "status": []},
        "concierge": {"freeze": [], "thaw": [], "status": []},
    }
    q, c = results["qemu-ga"], results["concierge"]
    points = {"mountpoints": [str(mnt)]}
    for _ in range(rounds):
        q["freeze"].append(timed(lambda: qga.cmd("guest-fsfreeze-freeze-list", points)))
        q["status"].append(timed(lambda: qga.cmd("guest-fsfreeze-status")))
        q["thaw"].append(timed(lambda: qga.cmd("guest-fsfreeze-thaw")))
        c["freeze"].append(timed(lambda: ctx.ask(m.FREEZE, points).unwrap()))
        c["status"].append(timed(lambda: ctx.ask(m.FREEZE_STATUS).unwrap()))
        c["thaw"].append(timed(lambda: ctx.ask(m.THAW, {}).unwrap()))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds

    from concierge.actors.lifecycle.node import LifecycleNode
    from concierge.testing.context import FakeContext

    rows: list[str] = []
    for fstype in ("ext4", "xfs"):
        with loop_fs(fstype) as mnt, qemu_ga() as (qga, _proc):
            state = Path(tempfile.mkdtemp(prefix="cc-bench-state-"))
            ctx = FakeContext(
                "lifecycle", {"only_mountpoints": [str(mnt)], "fsfreeze_hook": "", "state_dir": str(state)}
            )
            ctx.run_node(LifecycleNode)
            try:
                results = run_rounds(qga, ctx, mnt, rounds)
                for op in ("freeze", "thaw", "status"):
                    qp50, qp90, qmax = summary(results["qemu-ga"][op])
                    cp50, cp90, cmax = summary(results["concierge"][op])
                    rows.append(
                        f"| {fstype} | {op} | {qp50:.2f} | {qp90:.2f} | {qmax:.2f} | {cp50:.2f} "
                        f"| {cp90:.2f} | {cmax:.2f} | {cp50 / qp50:.2f} |"
                    )
            finally:
                ctx.close()
                shutil.rmtree(state, ignore_errors=True)

    print(f"Freeze/thaw of one loop-mounted filesystem, {rounds} rounds each, interleaved.")
    print("qemu-ga: unix socket + JSON; concierge: in-process FakeContext (no transport hop).\n")
    print("| fs | op | qemu-ga p50 ms | p90 | max | concierge p50 ms | p90 | max | ratio p50 (ours/qemu-ga) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()

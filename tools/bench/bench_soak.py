"""Soak: a long mixed QGA workload against the whole agent and the stock qemu-ga, same run.

Each cycle sends eight requests and waits for each answer: guest-ping, guest-info,
guest-get-osinfo, guest-get-fsinfo, guest-file-open (r+ on a 4 KiB file), guest-file-read
(4 KiB), guest-file-write (64 bytes) and guest-file-close. Two phases per agent: every request
over one connection, and a new connection for every cycle (reconnecting hosts such as Proxmox
open one per command). While it runs, the agent's process tree is sampled ``--samples`` times:
total PSS (smaps_rollup), threads and open fds. Growth is reported from the end of the warm-up
(the first ``--warmup`` of the requests) to the end, so one-time costs (imports, caches, the
first fsinfo) are not counted as a leak.

Ours: ``concierge run`` with the transport, lifecycle, monitor and guestops actors (the real
ones, in their own processes; lifecycle only freezes a scratch directory, never). Stock: qemu-ga 7.2 on a unix socket.

Usage (root, qemu-guest-agent installed):
  .venv/bin/python tools/bench/bench_soak.py --requests 100000
  nice -n 10 .venv/bin/python tools/bench/bench_soak.py --requests 1000000
Prints markdown: a summary table and one time series per agent and phase. Each sample is also
written to stderr as it is taken, and the tables so far after every phase, so a long run that
has to be stopped (SIGTERM or Ctrl-C: the agents are stopped cleanly) still leaves its figures.
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from concierge.supervisor.procstat import process_tree, sample
from concierge.testing.harness import AgentHarness, catalog
from concierge.testing.qga_peer import QemuGa, RawClient, wait_for_socket

CYCLE = 8  # requests per cycle (see the module docstring)
WRITE_B64 = base64.b64encode(b"soak" * 16).decode()


@dataclass
class Sample:
    """One look at the agent's processes."""

    requests: int
    elapsed_s: float
    pss_mb: float
    threads: int
    fds: int
    #: PSS MB per process ("comm pid"), for finding which process grows
    by_process: dict[str, float] = field(default_factory=dict)


@dataclass
class Phase:
    """One agent, one connection pattern."""

    agent: str
    pattern: str
    samples: list[Sample] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0


def comm(pid: int) -> str:
    """``cc-transport 1234``: the process name (actors are called cc-<id>) and its pid."""
    try:
        return f"{Path(f'/proc/{pid}/comm').read_text().strip()} {pid}"
    except OSError:
        return f"? {pid}"


def look(pids: list[int], requests: int, started: float) -> Sample:
    """Sum PSS, threads and fds over ``pids``."""
    stats = {pid: sample(pid) for pid in pids}
    return Sample(
        requests=requests,
        elapsed_s=time.monotonic() - started,
        pss_mb=sum(s.get("pss_bytes", 0) for s in stats.values()) / 1e6,
        threads=sum(s.get("threads", 0) for s in stats.values()),
        fds=sum(s.get("fds", 0) for s in stats.values()),
        by_process={comm(pid): s.get("pss_bytes", 0) / 1e6 for pid, s in stats.items()},
    )


def cycle_requests(path: Path) -> list[Callable[[int | None], bytes]]:
    """The eight requests of one cycle; file requests take the handle opened in the cycle."""
    name = str(path)
    return [
        lambda h: b'{"execute":"guest-ping"}',
        lambda h: b'{"execute":"guest-info"}',
        lambda h: b'{"execute":"guest-get-osinfo"}',
        lambda h: b'{"execute":"guest-get-fsinfo"}',
        lambda h: json.dumps({"execute": "guest-file-open", "arguments": {"path": name, "mode": "r+"}}).encode(),
        lambda h: json.dumps({"execute": "guest-file-read", "arguments": {"handle": h, "count": 4096}}).encode(),
        lambda h: json.dumps(
            {"execute": "guest-file-write", "arguments": {"handle": h, "buf-b64": WRITE_B64}}
        ).encode(),
        lambda h: json.dumps({"execute": "guest-file-close", "arguments": {"handle": h}}).encode(),
    ]


def run_cycle(client: RawClient, requests: list[Callable[[int | None], bytes]]) -> int:
    """One cycle on ``client``; returns how many answers were errors."""
    handle: int | None = None
    errors = 0
    for index, build in enumerate(requests):
        client.send(build(handle))
        line = client.read_line()
        if b'"error"' in line[:12]:
            errors += 1
        elif index == 4:
            handle = json.loads(line)["return"]
    return errors


def soak(phase: Phase, sock: Path, pids: Callable[[], list[int]], data: Path, *, total: int, samples: int) -> None:
    """Run ``total`` requests (whole cycles) against ``sock``, sampling ``pids()`` as it goes."""
    requests = cycle_requests(data)
    cycles = max(1, total // CYCLE)
    every = max(1, cycles // samples)
    started = time.monotonic()
    phase.samples.append(look(pids(), 0, started))
    client = RawClient(sock, timeout_s=60)
    client.resync()
    try:
        for n in range(1, cycles + 1):
            if phase.pattern == "reconnecting":
                client.close()
                client = RawClient(sock, timeout_s=60)
            phase.errors += run_cycle(client, requests)
            if n % every == 0 or n == cycles:
                last = look(pids(), n * CYCLE, started)
                phase.samples.append(last)
                print(
                    f"{phase.agent}, {phase.pattern}: {last.requests:,} requests, {last.elapsed_s:.0f} s, "
                    f"PSS {last.pss_mb:.2f} MB, {last.threads} threads, {last.fds} fds",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        client.close()
    phase.seconds = time.monotonic() - started


@contextmanager
def our_agent(tmp: Path) -> Iterator[tuple[Path, Callable[[], list[int]]]]:
    """The whole agent with the actors the workload reaches (its own directory per phase)."""
    tmp = Path(tempfile.mkdtemp(dir=tmp))
    sock = tmp / "ours.sock"
    actors = {
        "transport": {"entry": "concierge.actors.hostlink.node:HostLinkNode", "essential": True},
        "lifecycle": {  # every QGA connection asks it for the freeze state
            "entry": "concierge.actors.lifecycle.node:LifecycleNode",
            "settings": {"state_dir": str(tmp / "lifecycle"), "fsfreeze_hook": "", "only_mountpoints": [str(tmp)]},
        },
        "monitor": {"entry": "concierge.actors.monitor.node:MonitorNode"},
        "guestops": {
            "entry": "concierge.actors.guestops.node:GuestOpsNode",
            "settings": {"state_dir": str(tmp / "guestops")},
        },
    }
    root = tmp / "agent"
    root.mkdir()
    agent = AgentHarness(root, catalog(actors), args=("--log-format", "text", "--channel", f"qga=unix-listen:{sock}"))
    agent.start()
    try:
        wait_for_socket(sock)
        proc = agent.proc
        assert proc is not None
        yield sock, lambda: process_tree(proc.pid)
    finally:
        agent.stop()


@contextmanager
def stock_agent() -> Iterator[tuple[Path, Callable[[], list[int]]]]:
    """qemu-ga on a unix socket."""
    with QemuGa() as ga:
        proc = ga.proc
        assert proc is not None
        yield ga.socket_path, lambda: [proc.pid]


def growth(phase: Phase, warmup: float) -> tuple[Sample, Sample]:
    """The first sample at or after the warm-up, and the last one."""
    cut = warmup * phase.samples[-1].requests
    start = next(s for s in phase.samples if s.requests >= cut)
    return start, phase.samples[-1]


def report(phases: list[Phase], warmup: float, total: int) -> str:
    """Markdown: summary, then each phase's series."""
    phases = [phase for phase in phases if len(phase.samples) > 1]
    lines = [
        f"{total:,} requests per phase ({CYCLE} per cycle: ping, info, osinfo, fsinfo, file "
        f"open/read/write/close); growth measured after the first {warmup:.0%} (warm-up).",
        "",
        "| agent | connections | req/s | errors | PSS after warm-up MB | PSS at end MB | growth MB "
        "| threads (warm-up -> end) | fds (warm-up -> end) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in phases:
        start, end = growth(phase, warmup)
        rate = end.requests / end.elapsed_s if end.elapsed_s else 0.0
        lines.append(
            f"| {phase.agent} | {phase.pattern} | {rate:,.0f} | {phase.errors} | {start.pss_mb:.1f} | "
            f"{end.pss_mb:.1f} | {end.pss_mb - start.pss_mb:+.2f} | {start.threads} -> {end.threads} "
            f"| {start.fds} -> {end.fds} |"
        )
    for phase in phases:
        start, end = growth(phase, warmup)
        lines += [
            "",
            f"{phase.agent}, {phase.pattern}, per process:",
            "",
            "| process | PSS after warm-up MB | at end MB |",
        ]
        lines.append("|---|---|---|")
        lines += [
            f"| {name} | {start.by_process.get(name, 0.0):.2f} | {mb:.2f} |"
            for name, mb in sorted(end.by_process.items())
        ]
        lines += ["", f"{phase.agent}, {phase.pattern}:", "", "| requests | s | PSS MB | threads | fds |"]
        lines.append("|---|---|---|---|---|")
        lines += [
            f"| {s.requests:,} | {s.elapsed_s:.0f} | {s.pss_mb:.2f} | {s.threads} | {s.fds} |" for s in phase.samples
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000, help="requests per agent and phase")
    parser.add_argument("--samples", type=int, default=20, help="process samples per phase")
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of the requests before growth counts")
    parser.add_argument("--agents", default="ours,stock", help="comma list: ours, stock")
    parser.add_argument("--patterns", default="one,reconnecting", help="comma list: one, reconnecting")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop the agents
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data.bin"
        data.write_bytes(bytes(range(256)) * 16)
        agents = {"ours": lambda: our_agent(tmp), "stock": stock_agent}
        for agent_name in args.agents.split(","):
            for pattern in args.patterns.split(","):
                label = "one connection" if pattern == "one" else "reconnecting"
                phase = Phase("Concierge" if agent_name == "ours" else "qemu-ga", label)
                phases.append(phase)
                try:
                    with agents[agent_name]() as (sock, pids):  # a fresh agent per phase
                        soak(phase, sock, pids, data, total=args.requests, samples=args.samples)
                except BaseException:
                    print(report(phases, args.warmup, args.requests), file=sys.stderr, flush=True)
                    raise
                print(f"done: {phase.agent}, {phase.pattern}, {phase.seconds:.0f} s", file=sys.stderr, flush=True)
                print(report(phases, args.warmup, args.requests), file=sys.stderr, flush=True)
    print(report(phases, args.warmup, args.requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Memory of the whole agent against the stock agents it replaces, measured in one run.

Two profiles, each with its stock counterpart measured in the same run:

- ``qga`` (a cloud server guest: one QGA port): ``concierge run`` with the built-in actor
  catalog and one ``--channel qga=...``, against ``qemu-ga``. PSS is read three times: idle
  after start (only what the guest needs runs), right after a pass of mixed QGA requests
  (which wakes the on-demand actors), and once they went idle again (``idle_stop_s`` + 5 s).
  Also: exec -> first answered guest-ping, median of a few runs, for both agents.
- ``desktop``: every system actor running (transport with the three channels, lifecycle,
  monitor, guestops, sso and the session gateway on a private logind, input with a file sink)
  plus one user session (``concierge session``: link, display, clipboard, desktop) on Xvfb
  with a SPICE client attached. Stock: qemu-ga + spice-vdagentd + spice-vdagent (GTK) on the
  same Xvfb, the SPICE client attached (the old ovirt-guest-agent is Python 2 only and cannot
  be installed on Debian 12).

PSS is read from /proc/PID/smaps_rollup after everything settled.

Run: ``.venv/bin/python tools/bench/bench_memory.py [--profile qga|desktop|both]`` (root;
needs Xvfb, qemu-ga, spice-vdagent, dbus, python3-dbusmock). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stock_vdagent import StockAgent

from concierge.config.loader import defaults_text
from concierge.supervisor.procstat import process_tree as tree
from concierge.supervisor.procstat import sample
from concierge.testing.dbus import LogindMock, private_system_bus
from concierge.testing.harness import AgentHarness, catalog
from concierge.testing.qga_peer import QemuGa, RawClient
from concierge.testing.spice_host import SpiceHost
from concierge.testing.xservers import xvfb

HERE = Path(__file__).resolve()
SRC = HERE.parents[2] / "src"


def pss_mb(pids: list[int]) -> float:
    return sum(sample(p).get("pss_bytes", 0) for p in pids) / 1e6


def name(pid: int) -> str:
    """The process name (actors call themselves cc-<id>; the supervisors keep python's)."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    if comm.startswith("cc-"):
        return comm
    return " ".join(part.decode() for part in cmd[:2] + cmd[-6:-4])


#: the QGA-only pass: what a cloud host asks (inventory, time, freeze status, an exec)
MIXED = (
    "guest-ping", "guest-info", "guest-get-osinfo", "guest-get-host-name", "guest-get-timezone",
    "guest-network-get-interfaces", "guest-get-fsinfo", "guest-get-disks", "guest-get-time",
    "guest-fsfreeze-status", "guest-get-vcpus", "guest-get-users", "guest-get-load",
)  # fmt: skip
EXEC = b'{"execute":"guest-exec","arguments":{"path":"/bin/true","capture-output":true}}'


def wait_socket(path: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with RawClient(path, timeout_s=2.0) as client:
                client.exchange(b'{"execute":"guest-ping"}')
            return
        except OSError:
            time.sleep(0.005)
    raise TimeoutError(f"{path} never answered")


def mixed_pass(path: Path, rounds: int) -> None:
    """``rounds`` times every command of MIXED, plus a guest-exec and its status."""
    with RawClient(path, timeout_s=30.0) as client:
        for _ in range(rounds):
            for command in MIXED:
                client.exchange(json.dumps({"execute": command}).encode())
            pid = json.loads(client.exchange(EXEC)[0])["return"]["pid"]
            while True:
                status = json.loads(client.exchange(b'{"execute":"guest-exec-status","arguments":{"pid":%d}}' % pid)[0])
                if status["return"]["exited"]:
                    break
                time.sleep(0.01)


def cpu_ms(pids: list[int]) -> float:
    """CPU time used by ``pids`` and their reaped children (user + system), in ms."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += sum(int(x) for x in fields[11:15])
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def first_answer_ms(cmd: list[str], sock: Path, runs: int) -> tuple[float, float]:
    """Medians from exec to the first answered guest-ping: wall-clock milliseconds, and the
    CPU milliseconds the agent's processes had used by then (what a loaded machine cannot
    inflate: on an idle guest with 2 vCPUs the wall time is about this or less)."""
    results, cpu = [], []
    for _ in range(runs):
        sock.unlink(missing_ok=True)
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    with RawClient(sock, timeout_s=10.0) as client:
                        client.exchange(b'{"execute":"guest-ping"}')
                    break
                except OSError:
                    time.sleep(0.001)
            results.append((time.perf_counter() - started) * 1000)
            cpu.append(cpu_ms(tree(proc.pid)))
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    return statistics.median(results), statistics.median(cpu)


def qga_profile(rounds: int, starts: int, src: Path = SRC, label: str = "Concierge") -> None:
    """A QGA-only guest: the built-in catalog with one QGA channel, against qemu-ga."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sock = tmp / "qga.sock"
        config = tmp / "concierge.toml"
        config.write_text(
            f'[agent]\nstate_dir = "{tmp / "state"}"\nlog_format = "text"\n'
            f'[actors.guestops.settings]\nstate_dir = "{tmp / "guestops"}"\n'
            f'[actors.lifecycle.settings]\nstate_dir = "{tmp / "lifecycle"}"\n'
        )
        cmd = [sys.executable, "-m", "concierge", "--runtime-dir", str(tmp / "run"), "run",
               "--config", str(config), "--channel", f"qga=unix-listen:{sock}"]  # fmt: skip
        agent = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stock = QemuGa().start()
        assert stock.proc is not None
        try:
            wait_socket(sock)
            time.sleep(3)  # the front-end's start-up probes woke lifecycle and guestops: wait
            idle_s = 30.0 + 5.0  # the shipped idle_stop_s, plus heartbeats and the stop
            time.sleep(idle_s)
            rows = [("idle after start", pss_mb(tree(agent.pid)), len(tree(agent.pid)))]
            stock_idle = pss_mb([stock.proc.pid])
            mixed_pass(sock, rounds)
            mixed_pass(stock.socket_path, rounds)
            rows.append((f"after {rounds} mixed passes (actors awake)", pss_mb(tree(agent.pid)), len(tree(agent.pid))))
            detail = [(name(pid), pss_mb([pid])) for pid in tree(agent.pid)]
            stock_busy = pss_mb([stock.proc.pid])
            time.sleep(idle_s)
            rows.append(("idle again (on-demand actors stopped)", pss_mb(tree(agent.pid)), len(tree(agent.pid))))
        finally:
            agent.terminate()
            agent.wait(15)
            stock.stop()
        ours_ms, ours_cpu = first_answer_ms([*cmd[:4], str(tmp / "run2"), *cmd[5:]], sock, starts)
        stock_cmd = [stock.binary, "-m", "unix-listen", "-p", str(sock), "-t", str(tmp), "-f", str(tmp / "ga.pid")]
        stock_ms, stock_cpu = first_answer_ms(stock_cmd, sock, starts)
    print(f"\n### QGA-only guest (built-in catalog, one QGA channel): {label}\n")
    print(f"| moment | {label} PSS MB | processes | qemu-ga PSS MB | ratio |\n|---|---|---|---|---|")
    for moment, value, count in rows:
        theirs = stock_busy if "mixed" in moment else stock_idle
        print(f"| {moment} | {value:.1f} | {count} | {theirs:.1f} | {value / theirs:.1f} |")
    print("\n| process (awake) | PSS MB |\n|---|---|")
    for proc_name, value in detail:
        print(f"| {proc_name} | {value:.1f} |")
    print(f"\n| exec -> first guest-ping answered (median of {starts}) | {label} {ours_ms:.0f} ms "
          f"| qemu-ga {stock_ms:.1f} ms | ratio {ours_ms / stock_ms:.0f} |")  # fmt: skip
    print(f"| CPU used by then (median of {starts}) | {label} {ours_cpu:.0f} ms | qemu-ga {stock_cpu:.0f} ms | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=("qga", "desktop", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=20, help="mixed QGA passes (qga profile)")
    parser.add_argument("--starts", type=int, default=5, help="exec -> first answer runs (qga profile)")
    parser.add_argument(
        "--compare-src", type=Path, help="qga profile: also measure the agent of another checkout's src (before/after)"
    )
    args = parser.parse_args()
    if args.profile in ("qga", "both"):
        if args.compare_src is not None:
            qga_profile(args.rounds, args.starts, args.compare_src.resolve(), "before")
        qga_profile(args.rounds, args.starts)
    if args.profile in ("desktop", "both"):
        for all_started in (False, True):
            print(f"\n### Desktop guest (system agent + one user session), all started: {all_started}\n")
            desktop_profile(all_started)


def builtin_activation() -> dict[str, dict[str, object]]:
    """The shipped activation keys of each built-in actor (on demand, idle time, requires)."""
    shipped = tomllib.loads(defaults_text())["actors"]
    keys = ("activation", "idle_stop_s", "requires")
    return {actor: {k: v for k, v in spec.items() if k in keys} for actor, spec in shipped.items()}


def desktop_profile(all_started: bool) -> None:
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp_name, xvfb(1280, 800) as display:
        tmp = Path(tmp_name)
        with private_system_bus(tmp) as bus:
            logind = LogindMock(bus)
            logind.add_session("c1", os.getuid(), "root", active=True)
            root = tmp / "agent"
            root.mkdir()
            actors = {
                "transport": {"entry": "concierge.actors.hostlink.node:HostLinkNode", "essential": True},
                "lifecycle": {"entry": "concierge.actors.lifecycle.node:LifecycleNode", "essential": True,
                              "settings": {"dbus_address": bus, "state_dir": str(tmp / "lc")}},
                "monitor": {"entry": "concierge.actors.monitor.node:MonitorNode"},
                "guestops": {"entry": "concierge.actors.guestops.node:GuestOpsNode",
                             "settings": {"state_dir": str(tmp / "go")}},
                "sso": {"entry": "concierge.actors.sso.node:SsoNode", "settings": {"system_bus": bus}},
                "input": {"entry": "concierge.actors.input.node:InputNode"},
                "session": {"entry": "concierge.actors.session.gateway:SessionGatewayNode",
                            "settings": {"users": [os.getuid()], "scan_run_user": False, "logind_bus": bus}},
            }  # fmt: skip
            if not all_started:  # the shipped defaults: quiet actors wait for their first request
                for actor_id, keys in builtin_activation().items():
                    actors[actor_id].update(keys)
            chans = [f"{p}=unix-listen:{tmp / p}.sock" for p in ("qga", "ovirt", "spice")]
            args = ["--log-format", "text", "--input-sink", f"file:{tmp / 'events'}"]
            for chan in chans:
                args += ["--channel", chan]
            agent = AgentHarness(root, catalog(actors), args=args)
            agent.start()
            env = {**os.environ, "PYTHONPATH": str(SRC)}
            session = subprocess.Popen(
                [sys.executable, "-m", "concierge", "--runtime-dir", str(tmp / "sess"), "session",
                 "--gateway-dir", str(agent.runtime_dir), "--display", display],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            conn = socket.socket(socket.AF_UNIX)
            conn.connect(str(tmp / "spice.sock"))
            host = SpiceHost(conn.fileno())
            host.handshake()
            host.mouse(10, 10, 0, 0)
            time.sleep(12)  # settled: an idle fork server retires after 10 s
            assert agent.proc is not None
            ours = tree(agent.proc.pid)
            mine = tree(session.pid)
            for pid in ours + mine:
                rows.append((f"concierge: {name(pid)}", pss_mb([pid])))
            total_ours = pss_mb(ours + mine)
            session.terminate()
            session.wait(10)
            agent.stop()
            conn.close()
            logind.close()
        stock_qga = QemuGa().start()
        stock = StockAgent(display)
        time.sleep(3)
        stock_pids = [stock_qga.proc.pid, stock.daemon.pid, stock.agent.pid] if stock_qga.proc else []
        for pid in stock_pids:
            rows.append((f"stock: {name(pid)}", pss_mb([pid])))
        total_stock = pss_mb(stock_pids)
        stock.close()
        stock_qga.stop()
    print("| process | PSS MB |\n|---|---|")
    for label, value in rows:
        print(f"| {label} | {value:.1f} |")
    what = "all system actors started" if all_started else "shipped activation: on-demand actors not asked for yet"
    print(f"\n| total | PSS MB |\n|---|---|\n| Concierge ({what}) + one session | {total_ours:.1f} |")
    print(f"| stock qemu-ga + spice-vdagentd + spice-vdagent | {total_stock:.1f} |")
    print(f"| ratio | {total_ours / total_stock:.2f} |")


if __name__ == "__main__":
    main()

"""Memory of the whole agent against the stock agents it replaces, measured in one run.

Ours: ``concierge run`` with every system actor running (transport with the three channels,
lifecycle, monitor, guestops, sso and the session gateway on a private logind, input with a
file sink) plus one user session (``concierge session``: link, display, clipboard, desktop) on
Xvfb with a SPICE client attached. Stock: qemu-ga + spice-vdagentd + spice-vdagent (GTK) on the
same Xvfb, the SPICE client attached (the old ovirt-guest-agent is Python 2 only and cannot be
installed on Debian 12). PSS is read from /proc/PID/smaps_rollup after everything settled.

Run: ``.venv/bin/python tools/bench/bench_memory.py`` (root; needs Xvfb, qemu-ga,
spice-vdagent, dbus, python3-dbusmock). Prints a markdown table.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stock_vdagent import StockAgent

from concierge.supervisor.procstat import process_tree as tree
from concierge.supervisor.procstat import sample
from concierge.testing.dbus import LogindMock, private_system_bus
from concierge.testing.harness import AgentHarness, catalog
from concierge.testing.qga_peer import QemuGa
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


def main() -> None:
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
            time.sleep(6)
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
    print(f"\n| total | PSS MB |\n|---|---|\n| Concierge (all system actors + one session) | {total_ours:.1f} |")
    print(f"| stock qemu-ga + spice-vdagentd + spice-vdagent | {total_stock:.1f} |")
    print(f"| ratio | {total_ours / total_stock:.2f} |")


if __name__ == "__main__":
    main()

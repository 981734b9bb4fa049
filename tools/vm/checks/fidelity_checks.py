"""Drop-in fidelity checks of issue 15 in the real guest. NOT YET RUN: written and reviewed
against the harness API while the shared build machine had no room for a TCG guest; run them
with ``tools/vm/run-e2e --agent concierge-unit --checks exec-plain,fsinfo-own-mounts,...`` and
record the result in docs/vm-e2e.md before relying on them.

Each compares with the stock qemu-ga in the same guest where the issue asks for a reference:
the stock suite records its answers in ``ctx.results["stock"]`` (phase 3 of run-e2e).
"""

from __future__ import annotations

import time
from typing import Any

from checks.context import E2EContext
from checks.qga_client import QgaClient

#: what a guest-exec child reports about itself (compared with qemu-ga's child in the same guest)
EXEC_PROBE = (
    "echo oom=$(cat /proc/self/oom_score_adj); grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status;"
    " echo mnt=$(readlink /proc/self/ns/mnt) init_mnt=$(readlink /proc/1/ns/mnt);"
    " echo cgroupfs=$(test -w /sys/fs/cgroup && echo rw || echo ro);"
    " chrt -f 1 true && echo chrt=ok; setarch linux32 true && echo setarch=ok;"
    " env | grep -E '^(PYTHONPATH|CONCIERGE_|WATCHDOG_|NOTIFY_SOCKET|STATE_DIRECTORY|RUNTIME_DIRECTORY)=' || true"
)


def exec_probe(qga: QgaClient) -> str:
    code, out, err = qga.run(["sh", "-c", EXEC_PROBE])
    assert code == 0, (code, err)
    return out


def check_exec_plain_process(ctx: E2EContext) -> dict[str, Any]:
    """Item 1: a guest-exec child is a plain root process of the guest, as under qemu-ga."""
    with QgaClient(ctx.qga, timeout=60) as qga:
        qga.sync()
        ours = exec_probe(qga)
    stock = ctx.results.get("stock", {}).get("exec-probe")
    facts = dict(line.split("=", 1) for line in ours.split() if "=" in line)
    assert facts.get("oom") == "0", ours
    assert facts.get("mnt") == facts.get("init_mnt"), ours  # the guest's mount namespace
    assert facts.get("cgroupfs") == "rw" and facts.get("chrt") == "ok" and facts.get("setarch") == "ok", ours
    assert "Seccomp:\t0" in ours and "PYTHONPATH" not in ours and "CONCIERGE_" not in ours, ours
    if stock is not None:
        assert ours == stock, (ours, stock)
    return {"probe": ours.splitlines()}


def record_stock_reference(ctx: E2EContext) -> dict[str, Any]:
    """Stock phase: the exec probe and fsinfo mount points under qemu-ga, the references of
    check_exec_plain_process and check_fsinfo_own_mounts."""
    with QgaClient(ctx.qga, timeout=60) as qga:
        qga.sync()
        stock = ctx.results.setdefault("stock", {})
        stock["exec-probe"] = exec_probe(qga)
        stock["fsinfo-mountpoints"] = sorted(fs["mountpoint"] for fs in qga.execute("guest-get-fsinfo"))
    return {"recorded": sorted(stock)}


def check_fsinfo_own_mounts(ctx: E2EContext) -> dict[str, Any]:
    """Item 2: guest-get-fsinfo never lists /var/lib/concierge or /run/concierge."""
    with QgaClient(ctx.qga, timeout=60) as qga:
        qga.sync()
        points = sorted(fs["mountpoint"] for fs in qga.execute("guest-get-fsinfo"))
    assert not [p for p in points if p.startswith(("/var/lib/concierge", "/run/concierge"))], points
    stock = ctx.results.get("stock", {}).get("fsinfo-mountpoints")
    if stock is not None:
        assert points == stock, (points, stock)
    return {"mountpoints": points}


def check_lifecycle_crash_while_frozen(ctx: E2EContext) -> dict[str, Any]:
    """Item 3: SIGKILL of lifecycle while the root is frozen: thawed at once, and a thaw sent
    right after the kill is answered (not after the 60 s lease)."""
    delay_s = 5.0
    with QgaClient(ctx.qga, timeout=120) as qga:
        qga.sync()
        # guest-exec is refused while frozen: the killer is started before the freeze and waits
        killer = f"sleep {delay_s:g}; pkill -9 -f 'concierge.*lifecycle'"
        qga.execute("guest-exec", {"path": "sh", "arg": ["-c", killer]})
        assert qga.execute("guest-fsfreeze-freeze") > 0
        frozen_at = time.monotonic()
        time.sleep(delay_s + 0.5)
        answer = qga.execute("guest-fsfreeze-thaw")
        status = qga.execute("guest-fsfreeze-status")
        elapsed = time.monotonic() - frozen_at - delay_s
    assert status == "thawed", status
    assert elapsed < 5.0, elapsed  # before the fix: the lease (60 s)
    return {"thaw_answer": answer, "seconds_after_kill": round(elapsed, 2)}


def check_dpkg_remove(ctx: E2EContext) -> dict[str, Any]:
    """Item 4: ``dpkg -r concierge`` (the agent installed from its .deb: needs an image with
    the package, see docs/vm-e2e.md) stops the agent: QEMU sees every port closed. Runs last:
    nothing answers on the ports afterwards unless a stock agent is installed again."""
    with QgaClient(ctx.qga, timeout=120) as qga:
        qga.sync()
        code, out, _ = qga.run(["dpkg-query", "-W", "-f", "${Status}", "concierge"])
        assert code == 0 and "installed" in out, "the guest runs a checkout, not the package"
        qga.execute("guest-exec", {"path": "sh", "arg": ["-c", "sleep 1; dpkg -r concierge"]})
    start = time.monotonic()
    for port in ("org.qemu.guest_agent.0", "com.redhat.spice.0", "ovirt-guest-agent.0"):
        ctx.vm.wait_port(port, open_=False, timeout=60)
    return {"ports_closed_s": round(time.monotonic() - start, 2)}


def check_shutdown_survives_lifecycle_kill(ctx: E2EContext) -> dict[str, Any]:
    """Item 7 (replaces the final power-off phase): guest-shutdown, then the lifecycle actor is
    SIGKILLed right away (a guest-side job started first), and the guest must still power off:
    the request is durable until carried out (power-request.json, the QGA re-send)."""
    with QgaClient(ctx.qga, timeout=60) as qga:
        qga.sync()
        killer = "sleep 0.2; pkill -9 -f 'concierge.*lifecycle'"
        qga.execute("guest-exec", {"path": "sh", "arg": ["-c", killer]})
        start = time.monotonic()
        qga.send_no_reply("guest-shutdown", {"mode": "powerdown"})
        assert ctx.vm.proc is not None
        while ctx.vm.proc.poll() is None and time.monotonic() < start + 180:
            ctx.vm.poll_events(wait=0.5)
    assert ctx.vm.proc.returncode == 0, "the guest did not power off"
    return {"poweroff_s": round(time.monotonic() - start, 2)}

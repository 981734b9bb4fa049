"""Freeze/thaw of the guest's real root filesystem, the freeze lease, and guest-shutdown."""

from __future__ import annotations

import itertools
import time
from typing import Any

from checks.context import E2EContext
from checks.qga_checks import check_qga_frozen_refuses
from checks.qga_client import QgaClient

PROBE = "/var/tmp/e2e-freeze-probe"
# A writer in its own transient unit (outside the agent's cgroup): one timestamp per 50 ms,
# each written with O_SYNC semantics (dd conv=fsync) so it blocks while / is frozen.
WRITER = (
    f"rm -f {PROBE}; i=0; while [ $i -lt 400 ]; do date +%s.%N | "
    f"dd of={PROBE} oflag=append conv=notrunc,fsync status=none; sleep 0.05; "
    "i=$((i+1)); done"
)


def _stamps(qga: QgaClient) -> list[float]:
    code, out, _ = qga.run(["/bin/sh", "-c", f"cat {PROBE} 2>/dev/null || true"])
    assert code == 0
    return [float(x) for x in out.split()]


def _wait_stamps(qga: QgaClient, count: int, timeout: float = 60.0) -> list[float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stamps = _stamps(qga)
        if len(stamps) >= count:
            return stamps
        time.sleep(0.3)
    raise AssertionError(f"the probe writer wrote fewer than {count} stamps in {timeout} s")


def check_freeze_thaw(ctx: E2EContext) -> dict[str, Any]:
    """guest-fsfreeze-freeze really freezes / (a writer stalls), thaw releases it."""
    hold = float(ctx.options.get("freeze_hold_s", 3.0))
    with QgaClient(ctx.qga, timeout=30) as qga:
        qga.sync()
        code, _, err = qga.run(["systemd-run", "--quiet", "--unit=e2e-writer", "--collect", "/bin/sh", "-c", WRITER])
        assert code == 0, err
        before = len(_wait_stamps(qga, 5))
        start = time.monotonic()
        frozen = qga.execute("guest-fsfreeze-freeze")
        freeze_s = time.monotonic() - start
        assert isinstance(frozen, int) and frozen >= 1, frozen
        assert qga.execute("guest-fsfreeze-status") == "frozen"
        check_qga_frozen_refuses(qga)
        time.sleep(hold)
        start = time.monotonic()
        thawed = qga.execute("guest-fsfreeze-thaw")
        thaw_s = time.monotonic() - start
        assert thawed == frozen, (thawed, frozen)
        assert qga.execute("guest-fsfreeze-status") == "thawed"
        stamps = _wait_stamps(qga, before + 4)
        qga.run(["systemctl", "stop", "e2e-writer"])
    gap = max(b - a for a, b in itertools.pairwise(stamps))
    assert gap >= hold * 0.8, f"writer never stalled (largest gap {gap:.2f} s): / was not frozen"
    return {
        "filesystems": frozen,
        "freeze_s": round(freeze_s, 3),
        "thaw_s": round(thaw_s, 3),
        "writer_stall_s": round(gap, 2),
        "hold_s": hold,
    }


def check_freeze_lease(ctx: E2EContext) -> dict[str, Any]:
    """Concierge only: a freeze whose requester disappears thaws by itself (the lifecycle
    actor's disconnect grace, at the latest its freeze lease: 5 s and 60 s by default)."""
    lease = float(ctx.options.get("freeze_lease_s", 60.0))
    with QgaClient(ctx.qga, timeout=30) as qga:
        qga.sync()
        assert qga.execute("guest-fsfreeze-freeze") >= 1
    start = time.monotonic()  # the host went away with the guest frozen
    deadline = start + lease + 30
    while time.monotonic() < deadline:
        time.sleep(1.0)
        with QgaClient(ctx.qga, timeout=30) as qga:
            qga.sync()
            if qga.execute("guest-fsfreeze-status") == "thawed":
                return {"lease_s": lease, "thawed_after_s": round(time.monotonic() - start, 1)}
    with QgaClient(ctx.qga, timeout=30) as qga:
        qga.sync()
        qga.execute("guest-fsfreeze-thaw")
    raise AssertionError(f"still frozen {lease + 30:.0f} s after the host left")


def check_unit_activation(ctx: E2EContext) -> dict[str, Any]:
    """Through the packaged unit: udev's rule pulled concierge.service in from the port device,
    it is an active Type=notify service with a watchdog, and qemu-guest-agent was stopped by its
    Conflicts= (run-e2e did not stop it in this mode)."""
    from checks.concierge_checks import CheckSkippedError

    if not ctx.options.get("unit_mode"):
        raise CheckSkippedError("agent not started through the packaged unit (--agent concierge-unit)")
    device = "/dev/virtio-ports/org.qemu.guest_agent.0"  # systemctl maps a path to its unit
    with QgaClient(ctx.qga, timeout=30) as qga:
        qga.sync()
        _, wants, _ = qga.run(["systemctl", "show", "-p", "Wants", "--value", device])
        _, props, _ = qga.run(
            ["systemctl", "show", "concierge.service", "-p", "ActiveState,Type,WatchdogUSec,NRestarts,Restart"]
        )
        _, wanted_by, _ = qga.run(["systemctl", "show", "-p", "WantedBy", "--value", "concierge.service"])
        _, stock, _ = qga.run(["systemctl", "is-active", "qemu-guest-agent.service"])
    state = dict(line.split("=", 1) for line in props.split())
    assert "concierge.service" in wants.split() or ".device" in wanted_by, (wants, wanted_by)
    assert state["ActiveState"] == "active" and state["Type"] == "notify", state
    assert state["Restart"] == "on-failure" and state["WatchdogUSec"] != "0", state
    assert stock.strip() == "inactive", f"qemu-guest-agent.service is {stock.strip()}"
    return {"wanted_by": wanted_by.split(), **state, "qemu-guest-agent": stock.strip()}


def check_guest_shutdown(ctx: E2EContext) -> dict[str, Any]:
    """guest-shutdown (no reply on success) powers the VM off: QEMU reports SHUTDOWN and exits."""
    with QgaClient(ctx.qga) as qga:
        qga.sync()
        start = time.monotonic()
        qga.send_no_reply("guest-shutdown", {"mode": "powerdown"})
        assert ctx.vm.proc is not None
        deadline = start + 120
        while ctx.vm.proc.poll() is None and time.monotonic() < deadline:
            ctx.vm.poll_events(wait=0.5)
        exit_s = ctx.vm.wait_exit(timeout=5)
    shutdown_events = [e for e in ctx.vm.events if e.get("event") == "SHUTDOWN"]
    assert ctx.vm.proc.returncode == 0, ctx.vm.proc.returncode
    return {
        "poweroff_s": round(time.monotonic() - start, 2),
        "qemu_exit_s": round(exit_s, 2),
        "guest_initiated": any(e["data"].get("guest") for e in shutdown_events),
    }

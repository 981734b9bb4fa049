"""The installed package's lifecycle in the real guest (issue 15 item 4) and the agent's
footprint beside qemu-ga's in the same image (issue 16): needs ``run-e2e --agent
concierge-unit --deb``, which installs the .deb built by tools/ship/build-deb.sh in the guest.

The guest has no network: the stock qemu-guest-agent .deb (from the image build's debootstrap
cache) is shared beside ours as ``/mnt/e2e/qemu-guest-agent.deb`` for "switch back".
"""

from __future__ import annotations

import time
from typing import Any

from checks.concierge_checks import CheckSkippedError
from checks.context import E2EContext
from checks.qga_client import QgaClient

QGA = "org.qemu.guest_agent.0"
PORTS = ("org.qemu.guest_agent.0", "com.redhat.spice.0", "ovirt-guest-agent.0")
DEB = "/mnt/e2e/concierge.deb"
STOCK_DEB = "/mnt/e2e/qemu-guest-agent.deb"


def _connect(ctx: E2EContext, timeout: float = 60.0) -> QgaClient:
    """A synced client, reconnecting and re-sending the sync up to three times, as libvirt does
    after a sync timeout. A lost sync is a known transport defect seen right after a restart of
    the agent (docs/vm-e2e.md); counted in ``ctx.results["lost_syncs"]`` and reported, so that
    the package steps themselves still get checked."""
    for attempt in range(3):
        qga = QgaClient(ctx.qga, timeout=timeout)
        try:
            qga.sync(timeout=15)
        except (OSError, TimeoutError):
            qga.close()
            ctx.results["lost_syncs"] = ctx.results.get("lost_syncs", 0) + 1
            if attempt == 2:
                raise
            continue
        return qga
    raise AssertionError("unreachable")


def _units(qga: QgaClient) -> dict[str, str]:
    _, out, _ = qga.run(
        [
            "sh",
            "-c",
            "for u in concierge qemu-guest-agent; do "
            "echo $u=$(systemctl is-active $u.service); done; "
            "echo pkg=$(dpkg-query -W -f '${db:Status-Abbrev}' concierge 2>/dev/null)",
        ]
    )
    return dict(line.split("=", 1) for line in out.split("\n") if "=" in line)


def _background(qga: QgaClient, script: str, done: str = "") -> None:
    """Run ``script`` outside the agent's unit (it may stop that unit) and return at once; with
    ``done``, the guest writes the script's status to ``/mnt/e2e/<done>.done`` at the end."""
    if done:
        script = f"({script}); echo $? >/mnt/e2e/{done}.done"
    code, _, err = qga.run(["systemd-run", "--quiet", "--no-block", "--collect", "/bin/sh", "-c", f"sleep 1; {script}"])
    assert code == 0, err


def _wait_done(ctx: E2EContext, done: str, timeout: float = 180.0) -> str:
    """The status a background script wrote (dpkg runs on after the port reopens: its
    postinst restarts the agent, then re-triggers udev)."""
    marker = ctx.vm.workdir / "ctl" / f"{done}.done"
    deadline = time.monotonic() + timeout
    while not marker.exists() or not marker.read_text().strip():
        assert time.monotonic() < deadline, f"{done} did not finish in {timeout:.0f} s"
        time.sleep(0.5)
    return marker.read_text().strip()


def _reopened(ctx: E2EContext, mark: int, timeout: float = 180.0) -> None:
    """The QGA port closed after ``mark`` and is open again now."""
    ctx.vm.wait_port(QGA, open_=False, timeout=60, since=mark)
    closes = [
        i
        for i, e in enumerate(ctx.vm.events)
        if i >= mark and e.get("event") == "VSERPORT_CHANGE" and e["data"]["id"] == "port-qga" and not e["data"]["open"]
    ]
    ctx.vm.wait_port(QGA, open_=True, timeout=timeout, since=closes[-1] + 1)


def check_package_lifecycle(ctx: E2EContext) -> dict[str, Any]:
    """Upgrade in place, remove, switch back to qemu-ga, purge, install again: after each step
    the guest is in the state a user expects (issue 15 item 4: ``dpkg -r`` left the agent
    running and holding the ports). Ends with Concierge installed and answering."""
    if not ctx.options.get("deb"):
        raise CheckSkippedError("the guest runs the checkout, not the package (run-e2e --deb)")
    steps: dict[str, Any] = {}
    expected = {"concierge": "active", "qemu-guest-agent": "inactive", "pkg": "ii"}
    deadline = time.monotonic() + 120  # the first install's postinst may still be running
    with _connect(ctx) as qga:
        while (before := _units(qga)) != expected and time.monotonic() < deadline:
            time.sleep(1)
    assert before == expected, before

    # 1. upgrade: the same .deb over itself restarts the agent in place (postinst try-restart)
    ctx.vm.poll_events()
    mark = len(ctx.vm.events)
    with _connect(ctx) as qga:
        _background(qga, f"dpkg -i {DEB} >/mnt/e2e/upgrade.log 2>&1", done="upgrade")
    _reopened(ctx, mark)
    assert _wait_done(ctx, "upgrade") == "0", (ctx.vm.workdir / "ctl" / "upgrade.log").read_text()
    with _connect(ctx) as qga:
        steps["upgrade"] = _units(qga)
    assert steps["upgrade"] == before, steps

    # 2. remove, then switch back to the stock agent (no agent answers in between: the guest
    #    records what it saw in the shared directory)
    ctx.vm.poll_events()
    mark = len(ctx.vm.events)
    was_open = [p for p in PORTS if ctx.vm.port_open.get(_dev(p))]
    probe = (
        "echo concierge=$(systemctl is-active concierge.service); "
        "echo procs=$(pgrep -c -f '^concierge: ' || true); "  # every process is titled so
        "echo state=$(test -d /var/lib/concierge && echo kept || echo gone)"
    )
    with _connect(ctx) as qga:
        _background(
            qga,
            f"dpkg -r concierge >/mnt/e2e/remove.log 2>&1; sleep 2; ({probe}) >/mnt/e2e/removed.txt; "
            # qemu-ga's postinst leaves its static unit stopped (udev starts it at boot): as a
            # user would, start it
            f"dpkg -i {STOCK_DEB} >/mnt/e2e/stock.log 2>&1 && systemctl start qemu-guest-agent.service",
            done="switch-back",
        )
    start = time.monotonic()
    for port in was_open:
        ctx.vm.wait_port(port, open_=False, timeout=60, since=mark)
    steps["ports_closed_s"] = round(time.monotonic() - start, 2)
    _reopened(ctx, mark)
    assert _wait_done(ctx, "switch-back") == "0", (ctx.vm.workdir / "ctl" / "stock.log").read_text()
    removed = ctx.vm.workdir / "ctl" / "removed.txt"
    seen = dict(line.split("=", 1) for line in removed.read_text().split() if "=" in line)
    assert seen == {"concierge": "inactive", "procs": "0", "state": "kept"}, seen
    steps["removed"] = seen
    with _connect(ctx) as qga:
        info = qga.execute("guest-info")
        steps["switched_back"] = {**_units(qga), "version": info["version"]}
        # 3. purge (through the stock agent): state and configuration go
        _, out, _ = qga.run(
            [
                "sh",
                "-c",
                "dpkg -P concierge >/mnt/e2e/purge.log 2>&1; ls -d /var/lib/concierge /etc/concierge 2>/dev/null; true",
            ]
        )
        steps["purged_left"] = out.split()
    assert steps["switched_back"]["qemu-guest-agent"] == "active", steps
    assert steps["switched_back"]["pkg"] in ("rc", ""), steps
    assert steps["purged_left"] == [], steps

    # 4. install again over the stock agent (its Conflicts/Replaces remove qemu-guest-agent)
    ctx.vm.poll_events()
    mark = len(ctx.vm.events)
    with _connect(ctx) as qga:
        _background(qga, f"dpkg -i {DEB} >/mnt/e2e/reinstall.log 2>&1", done="reinstall")
    _reopened(ctx, mark)
    assert _wait_done(ctx, "reinstall") == "0", (ctx.vm.workdir / "ctl" / "reinstall.log").read_text()
    with _connect(ctx) as qga:
        steps["reinstalled"] = _units(qga)
    assert steps["reinstalled"] == before, steps
    steps["lost_syncs"] = ctx.results.get("lost_syncs", 0)
    return steps


def _dev(port: str) -> str:
    from vm import PORTS as VM_PORTS

    return VM_PORTS[port][1]


PSS_PROBE = (
    "cg=/sys/fs/cgroup$(systemctl show -p ControlGroup --value {unit}); t=0; n=0; "
    "for p in $(cat $cg/cgroup.procs); do [ $p = $$ ] && continue; "
    "v=$(sed -n 's/^Pss: *\\([0-9]*\\) kB/\\1/p' /proc/$p/smaps_rollup 2>/dev/null); "
    '[ -n "$v" ] || continue; t=$((t+v)); n=$((n+1)); done; echo $n $t'
)


def _restart_gap(ctx: E2EContext, unit: str) -> float:
    """Seconds between QEMU's port-closed and port-opened events across ``systemctl restart``:
    the agent's own start-to-port-open time, measured by the host's clock (QMP timestamps)."""
    ctx.vm.poll_events()
    mark = len(ctx.vm.events)
    with _connect(ctx) as qga:
        _background(qga, f"systemctl restart {unit}")
    _reopened(ctx, mark)
    changes = [e for e in ctx.vm.events[mark:] if e.get("event") == "VSERPORT_CHANGE" and e["data"]["id"] == "port-qga"]
    closed = max(_ts(e) for e in changes if not e["data"]["open"])
    opened = max(_ts(e) for e in changes if e["data"]["open"])
    return opened - closed


def _ts(event: dict[str, Any]) -> float:
    stamp = event["timestamp"]
    return float(stamp["seconds"]) + stamp["microseconds"] / 1e6


def measure_footprint(ctx: E2EContext, unit: str) -> dict[str, Any]:
    """PSS of every process of ``unit`` (idle, after the checks) and its restart-to-port-open
    time, three restarts (median): the figures issue 16 asks for, qemu-ga's in the same guest."""
    gaps = sorted(_restart_gap(ctx, unit) for _ in range(3))
    time.sleep(3)  # let a restarted agent settle (dormant actors stop, caches fill)
    with _connect(ctx) as qga:
        code, out, err = qga.run(["sh", "-c", PSS_PROBE.format(unit=unit)])
    assert code == 0, err
    procs, pss_kb = (int(v) for v in out.split())
    result = {
        "unit": unit,
        "processes": procs,
        "pss_mb": round(pss_kb / 1024, 1),
        "port_reopen_s_median": round(gaps[1], 2),
        "port_reopen_s": [round(g, 2) for g in gaps],
        "lost_syncs": ctx.results.get("lost_syncs", 0),
    }
    ctx.results.setdefault("footprint", {})[unit] = result
    return result


def check_footprint_stock(ctx: E2EContext) -> dict[str, Any]:
    return measure_footprint(ctx, "qemu-guest-agent.service")


def check_footprint(ctx: E2EContext) -> dict[str, Any]:
    """The agent under test's footprint, with qemu-ga's (stock phase) beside it."""
    if not ctx.options.get("unit_mode"):
        raise CheckSkippedError("the agent is not concierge.service here (--agent concierge-unit)")
    ours = measure_footprint(ctx, "concierge.service")
    stock = ctx.results.get("footprint", {}).get("qemu-guest-agent.service")
    if stock:
        ours["vs_stock"] = {
            "pss_ratio": round(ours["pss_mb"] / max(stock["pss_mb"], 0.1), 1),
            "port_reopen_delta_s": round(ours["port_reopen_s_median"] - stock["port_reopen_s_median"], 2),
        }
    return ours

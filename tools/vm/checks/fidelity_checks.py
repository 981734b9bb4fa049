"""Drop-in fidelity checks of issue 15 in the real guest (in run-e2e's default agent checks;
first run and results in docs/vm-e2e.md). The package's remove/purge/upgrade/switch-back
checks are in ``package_checks.py``.

Each compares with the stock qemu-ga in the same guest where the issue asks for a reference:
the stock suite records its answers in ``ctx.results["stock"]`` (phase 3 of run-e2e).
"""

from __future__ import annotations

import json
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
    if not ctx.options.get("unit_mode"):
        # `--agent concierge`: the harness's agent.sh exported PYTHONPATH (the shared tree) to
        # the agent, and a child inherits what its agent was started with, as under qemu-ga
        ours = "\n".join(line for line in ours.splitlines() if not line.startswith("PYTHONPATH=/opt/concierge/src"))
        ours += "\n" if ours else ""
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


#: commands whose complete answers are compared value for value (time and counters excluded)
ANSWER_SET = [
    "guest-info",
    "guest-get-osinfo",
    "guest-get-host-name",
    "guest-get-timezone",
    "guest-get-fsinfo",
    "guest-get-vcpus",
    "guest-get-memory-blocks",
    "guest-get-memory-block-info",
    "guest-network-get-interfaces",
    "guest-fsfreeze-status",
    "guest-get-users",
    "guest-get-disks",
    "guest-nope",
]
#: the differences docs/migration.md lists (anything else is a regression)
DOCUMENTED = {
    ("guest-info", "version"),
    ("guest-info", "supported_commands"),
}
#: members whose values move between two reads (fsinfo's used bytes, interface counters)
VOLATILE = {"used-bytes", "total-bytes", "total-bytes-privileged", "statistics"}


def _answers(ctx: E2EContext) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with QgaClient(ctx.qga, timeout=60) as qga:
        qga.sync()
        for command in ANSWER_SET:
            out[command] = _strip(qga.execute_raw(command))
    return out


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def record_stock_answers(ctx: E2EContext) -> dict[str, Any]:
    """Stock phase: qemu-ga's complete answers (the reference of check_qga_answers)."""
    ctx.results.setdefault("stock", {})["answers"] = _answers(ctx)
    return {"commands": len(ANSWER_SET)}


def check_qga_answers(ctx: E2EContext) -> dict[str, Any]:
    """The complete answer set of both agents in the same guest: every difference is printed
    (and written to qga-answers-diff.json); only the documented ones may remain."""
    stock = ctx.results.get("stock", {}).get("answers")
    assert stock is not None, "run the stock phase with this check selected"
    ours = _answers(ctx)
    diffs: dict[str, Any] = {}
    for command in ANSWER_SET:
        a, b = stock.get(command), ours.get(command)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and "return" in a and "return" in b:
            ra, rb = a["return"], b["return"]
            if isinstance(ra, dict) and isinstance(rb, dict):
                keys = {k for k in ra.keys() | rb.keys() if ra.get(k) != rb.get(k)}
                diffs.update({f"{command}:{k}": {"stock": ra.get(k), "ours": rb.get(k)} for k in keys})
                continue
        diffs[command] = {"stock": a, "ours": b}
    (ctx.vm.workdir / "qga-answers-diff.json").write_text(json.dumps(diffs, indent=1, sort_keys=True))
    for key, value in sorted(diffs.items()):
        print(f"difference {key}: {json.dumps(value, sort_keys=True)[:400]}")
    undocumented = [k for k in diffs if tuple(k.split(":", 1)) not in DOCUMENTED]
    assert not undocumented, f"undocumented differences: {undocumented}"
    return {"compared": len(ANSWER_SET), "documented_differences": sorted(diffs)}

"""QGA over the real port: liveness, inventory, error shapes, reconnects, and the differential.

The suite records a *shape* per command (keys and JSON types, error classes) so two agents can
be compared without comparing values that legitimately differ (times, counters, pids).
"""

from __future__ import annotations

import json
import socket
import statistics
import time
from typing import Any

from checks.context import E2EContext
from checks.qga_client import QgaClient, QgaError

READ_ONLY = [
    "guest-ping",
    "guest-info",
    "guest-get-osinfo",
    "guest-get-host-name",
    "guest-get-timezone",
    "guest-get-time",
    "guest-get-fsinfo",
    "guest-get-vcpus",
    "guest-get-memory-block-info",
    "guest-network-get-interfaces",
    "guest-fsfreeze-status",
    "guest-get-users",
    "guest-get-disks",
    "guest-get-diskstats",
    "guest-get-cpustats",
]


def shape(value: Any) -> Any:
    """Keys and JSON types of a reply, with lists reduced to the shape of their first item."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return "str"


def check_qga_ping(ctx: E2EContext) -> dict[str, Any]:
    """guest-sync-delimited, then guest-ping round trips: latency over the real port."""
    with QgaClient(ctx.qga) as qga:
        qga.sync(timeout=30)
        samples = []
        for _ in range(ctx.options.get("pings", 200)):
            start = time.perf_counter()
            assert qga.execute("guest-ping") == {}
            samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "pings": len(samples),
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 3),
    }


def check_qga_info(ctx: E2EContext) -> dict[str, Any]:
    """guest-info: a version and the commands hosts rely on, enabled."""
    with QgaClient(ctx.qga) as qga:
        qga.sync()
        info = qga.execute("guest-info")
    enabled = {c["name"] for c in info["supported_commands"] if c["enabled"]}
    for needed in (
        "guest-ping",
        "guest-sync-delimited",
        "guest-shutdown",
        "guest-fsfreeze-freeze",
        "guest-fsfreeze-thaw",
        "guest-exec",
        "guest-get-osinfo",
    ):
        assert needed in enabled, f"{needed} missing from guest-info"
    no_reply = {c["name"] for c in info["supported_commands"] if not c["success-response"]}
    assert "guest-shutdown" in no_reply
    return {"version": info["version"], "commands": len(info["supported_commands"])}


def check_qga_suite(ctx: E2EContext) -> dict[str, Any]:
    """Read-only commands, errors and framing quirks; records shapes for the differential."""
    record: dict[str, Any] = {}
    with QgaClient(ctx.qga) as qga:
        qga.sync()
        for command in READ_ONLY:
            reply = qga.execute_raw(command)
            record[command] = {"error": reply["error"]["class"]} if "error" in reply else shape(reply["return"])
        osinfo = qga.execute("guest-get-osinfo")
        assert osinfo["id"] == "debian" and osinfo["version-id"] == "12", osinfo
        assert qga.execute("guest-get-host-name") == {"host-name": "concierge-e2e"}
        roots = [fs for fs in qga.execute("guest-get-fsinfo") if fs["mountpoint"] == "/"]
        assert roots and roots[0]["type"] == "ext4", roots
        assert qga.execute("guest-fsfreeze-status") == "thawed"
        # Errors: unknown command, bad argument, garbage (id-less), id echoed verbatim.
        unknown = qga.execute_raw("guest-nope")
        assert unknown["error"]["class"] == "CommandNotFound", unknown
        record["unknown"] = unknown["error"]["class"]
        bad_arg = qga.execute_raw("guest-sync", {"id": "x"})
        record["bad-arg"] = bad_arg["error"]["class"]
        qga.send_raw(b'{"execute": "guest-ping", "id": {"a": [1, "b"]}}')
        assert qga.read_reply() == {"return": {}, "id": {"a": [1, "b"]}}
        qga.send_raw(b"hello\n")
        garbage = qga.read_reply()
        assert "error" in garbage and "id" not in garbage, garbage
        record["garbage"] = garbage["error"]["class"]
        # Split writes are reassembled.
        for byte in b'{"execute":"guest-ping"}':
            qga.send_raw(bytes([byte]))
        assert qga.read_reply() == {"return": {}}
        code, out, _ = qga.run(["/bin/echo", "hi"])
        assert (code, out) == (0, "hi\n")
    ctx.results.setdefault("qga-suite", {})[ctx.label] = record
    return {"commands": len(record)}


def check_qga_reconnect(ctx: E2EContext) -> dict[str, Any]:
    """Host disconnects (even with a reply in flight) and reconnects: the next client syncs."""
    timings = []
    for _ in range(3):
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(str(ctx.qga))
        raw.sendall(b'{"execute": "guest-get-osinfo"}\n')  # reply left unread
        raw.close()
        start = time.monotonic()
        with QgaClient(ctx.qga) as qga:
            qga.sync(timeout=30)
            assert qga.execute("guest-ping") == {}
        timings.append(time.monotonic() - start)
    return {"reconnects": len(timings), "max_resync_s": round(max(timings), 3)}


# Optional members newer QEMU releases added (the guest's stock qemu-ga is 7.2): an agent
# implementing the current schema may send them. Source: qga-qapi-schema.json vs 7.2.
NEWER_MEMBERS = {"total-bytes-privileged"}  # GuestFilesystemInfo, QEMU 9.1


def without_newer(value: Any) -> Any:
    """A shape with the members of :data:`NEWER_MEMBERS` removed, recursively."""
    if isinstance(value, dict):
        return {k: without_newer(v) for k, v in value.items() if k not in NEWER_MEMBERS}
    if isinstance(value, list):
        return [without_newer(v) for v in value]
    return value


def check_qga_differential(ctx: E2EContext) -> dict[str, Any]:
    """The agent under test answers every suite command with the stock agent's shapes (members
    added by newer QEMU schemas allowed)."""
    suites = ctx.results.get("qga-suite", {})
    assert "stock" in suites, "run the stock suite first"
    assert ctx.label in suites and ctx.label != "stock", "run the suite against the agent too"
    stock = suites["stock"]
    other = {k: without_newer(v) for k, v in suites[ctx.label].items()}
    diffs = {k: {"stock": stock[k], ctx.label: other.get(k)} for k in stock if other.get(k) != stock[k]}
    ctx.results["qga-differential"] = diffs
    (ctx.vm.workdir / "qga-differential.json").write_text(json.dumps(diffs, indent=1))
    assert not diffs, f"{len(diffs)} differences: {json.dumps(diffs, sort_keys=True)}"
    return {"compared": len(stock), "differences": 0}


def check_qga_frozen_refuses(qga: QgaClient) -> None:
    """While frozen, commands that could write must be refused (qemu-ga: CommandNotFound)."""
    try:
        qga.execute("guest-exec", {"path": "/bin/true"})
    except QgaError as err:
        assert "frozen" in str(err), err
    else:
        raise AssertionError("guest-exec accepted while frozen")


DOCTOR = (
    "import json, io, sys; from concierge.supervisor.doctor import run_doctor; "
    "out = io.StringIO(); code = run_doctor(as_json=True, out=out); "
    "doc = json.loads(out.getvalue()); doc['exit'] = code; print(json.dumps(doc))"
)


def check_doctor_in_guest(ctx: E2EContext) -> dict[str, Any]:
    """`concierge doctor` inside the guest sees the three ports, and qemu-ga holding its port
    (by process, by open file and by systemd unit) as a conflict."""
    with QgaClient(ctx.qga, timeout=30) as qga:
        qga.sync()
        # This checkout's doctor (mounted by agent.sh in agent modes; mount it under stock).
        qga.run(
            [
                "/bin/sh",
                "-c",
                "mkdir -p /opt/e2e-tools; mountpoint -q /opt/e2e-tools || "
                "mount -t 9p -o trans=virtio,version=9p2000.L,ro e2etools /opt/e2e-tools",
            ]
        )
        code, out, err = qga.run(
            ["/usr/bin/env", "PYTHONPATH=/opt/e2e-tools/src", "/usr/bin/python3", "-c", DOCTOR], timeout=60
        )
    assert code == 0, err[-500:]
    doc = json.loads(out)
    found = {f["name"]: f for f in doc["findings"]}
    for port in ("org.qemu.guest_agent.0", "com.redhat.spice.0", "ovirt-guest-agent.0"):
        assert found[port]["present"], found[port]
    qga_port = found["org.qemu.guest_agent.0"]
    if ctx.label == "stock":
        assert qga_port["status"] == "fail" and "qemu-ga" in qga_port["detail"], qga_port
        # (doctor also has a "migration" finding named qemu-ga: the stock-agents one is meant)
        agent = next(f for f in doc["findings"] if f["name"] == "qemu-ga" and f["area"] == "stock-agents")
        assert agent["status"] == "fail" and "qemu-guest-agent.service" in agent["active_units"], agent
        assert doc["exit"] == 4
    return {
        "exit": doc["exit"],
        "status": doc["status"],
        "qga_port": qga_port["detail"],
        "logind": found["logind"]["detail"],
    }

"""guest-exec / guest-exec-status: differential against qemu-ga, limits, hangs, leftovers."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from guestops_harness import OurClient, QgaSocketClient, audit_lines, make_ours

from concierge.actors.guestops.execs import start_time

pytestmark = pytest.mark.peer


def wait_status(client: QgaSocketClient | OurClient, pid: int, timeout_s: float = 20.0) -> dict[str, Any]:
    """Poll guest-exec-status until exited (generous bound; not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while True:
        reply = client.cmd("guest-exec-status", pid=pid)
        result: dict[str, Any] = reply["return"]
        if result["exited"] or time.monotonic() > deadline:
            return result
        time.sleep(0.02)


CASES: list[dict[str, Any]] = [
    {"path": "true"},
    {"path": "sh", "arg": ["-c", "exit 7"]},
    {"path": "sh", "arg": ["-c", "echo out; echo err >&2; exit 3"], "capture-output": True},
    {"path": "sh", "arg": ["-c", "echo out; echo err >&2"], "capture-output": False},
    {
        "path": "/bin/sh",
        "arg": ["-c", "cat; echo e >&2"],
        "capture-output": True,
        "input-data": base64.b64encode(b"from stdin\n\x00\xff").decode(),
    },
    {"path": "sh", "arg": ["-c", "cat"], "capture-output": True, "input-data": ""},
    {"path": "sh", "arg": ["-c", "env | sort"], "env": ["FOO=bar", "A=b=c"], "capture-output": True},
    {"path": "sh", "arg": ["-c", "kill -TERM $$"], "capture-output": True},
    {"path": "sh", "arg": ["-c", "kill -KILL $$"]},
    {"path": "sh", "arg": ["-c", "printf x"], "capture-output": True},
    {"path": "sh", "arg": ["-c", "exec >&- 2>&-; exit 1"], "capture-output": True},
    {"path": "sh", "arg": ["-c", "head -c 300000 /dev/zero; exit 2"], "capture-output": True},
    {
        "path": "sh",
        "arg": ["-c", "head -c 5 /dev/zero"],
        "capture-output": True,
        "input-data": base64.b64encode(b"x" * 300000).decode(),
    },  # stdin never read: EPIPE
]


def test_exec_matches_qemu_ga(qga: QgaSocketClient, ours: OurClient, tmp_path: Path) -> None:
    script = tmp_path / "no-shebang"
    script.write_text("echo from a script without shebang: $0 $1\n")
    script.chmod(0o755)
    for case in [*CASES, {"path": str(script), "arg": ["x"], "capture-output": True}]:
        results = []
        for client in (qga, ours):
            reply = client.cmd("guest-exec", **case)
            pid = reply["return"]["pid"]
            status = wait_status(client, pid)
            again = client.cmd("guest-exec-status", pid=pid)
            results.append((status, again))
        assert results[0] == results[1], case
        assert results[1][1] == {"error": {"class": "GenericError", "desc": "Invalid parameter 'pid'"}}


def test_default_output_limit_matches_qemu_ga(qga: QgaSocketClient, ours: OurClient) -> None:
    case = {"path": "sh", "arg": ["-c", "head -c 17000000 /dev/zero; echo e >&2"], "capture-output": True}
    results = []
    for client in (qga, ours):
        status = wait_status(client, client.cmd("guest-exec", **case)["return"]["pid"])
        results.append(
            (
                len(base64.b64decode(status["out-data"])),
                status["out-truncated"],
                status["err-data"],
                status["err-truncated"],
                status["exitcode"],
            )
        )
    assert results[0] == results[1] == (16 * 1024 * 1024, True, "ZQo=", False, 0)


def test_exec_errors_match_qemu_ga(qga: QgaSocketClient, ours: OurClient) -> None:
    for case in (
        {"path": "/nonexistent/prog"},
        {"path": "no-such-command-xyz"},
        {"path": "/tmp"},
        {"path": "sh", "input-data": "!!"},
    ):
        assert qga.cmd("guest-exec", **case) == ours.cmd("guest-exec", **case), case
    assert qga.cmd("guest-exec-status", pid=1) == ours.cmd("guest-exec-status", pid=1)


def test_capture_modes_enum(ours: OurClient) -> None:
    script = ["-c", "echo out; echo err >&2"]
    expect = {
        "none": (None, None),
        "stdout": (b"out\n", None),
        "stderr": (None, b"err\n"),
        "separated": (b"out\n", b"err\n"),
        "merged": (b"out\nerr\n", None),
    }
    for mode, (out, err) in expect.items():
        pid = ours.cmd("guest-exec", path="sh", arg=script, **{"capture-output": mode})
        status = wait_status(ours, pid["return"]["pid"])
        got_out = base64.b64decode(status["out-data"]) if "out-data" in status else None
        got_err = base64.b64decode(status["err-data"]) if "err-data" in status else None
        assert (got_out, got_err) == (out, err), mode
    bad = ours.cmd("guest-exec", path="true", **{"capture-output": "both"})
    assert bad["error"]["class"] == "GenericError"


def test_output_limit_truncates_and_drains(tmp_path: Path) -> None:
    ctx, client = make_ours(tmp_path / "state", max_output_bytes=1000)
    try:
        pid = client.cmd(
            "guest-exec", path="sh", arg=["-c", "head -c 3000000 /dev/zero; echo tail >&2"], **{"capture-output": True}
        )["return"]["pid"]
        status = wait_status(client, pid)
        assert status["exitcode"] == 0  # the child was never blocked by a full pipe
        assert len(base64.b64decode(status["out-data"])) == 1000
        assert status["out-truncated"] is True
        assert base64.b64decode(status["err-data"]) == b"tail\n"
        assert status["err-truncated"] is False
    finally:
        ctx.close()


def test_hanging_child_does_not_block_others(ours: OurClient, tmp_path: Path) -> None:
    hung = ours.cmd("guest-exec", path="sleep", arg=["300"], **{"capture-output": True})
    hung_pid = hung["return"]["pid"]
    (tmp_path / "f").write_bytes(b"data")
    for _ in range(20):
        assert ours.cmd("guest-exec-status", pid=hung_pid) == {"return": {"exited": False}}
        handle = ours.cmd("guest-file-open", path=str(tmp_path / "f"))["return"]
        assert ours.cmd("guest-file-read", handle=handle)["return"]["count"] == 4
        ours.cmd("guest-file-close", handle=handle)
    quick = ours.cmd("guest-exec", path="true")["return"]["pid"]
    assert wait_status(ours, quick) == {"exited": True, "exitcode": 0}
    # the child is in its own process group, so the whole tree can be killed at once
    assert os.getpgid(hung_pid) == hung_pid
    os.killpg(hung_pid, signal.SIGKILL)
    assert wait_status(ours, hung_pid) == {"exited": True, "signal": 9}


def test_background_grandchild_keeps_exited_false(ours: OurClient, tmp_path: Path) -> None:
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    pid = ours.cmd("guest-exec", path="sh", arg=["-c", f"cat {fifo} & echo bg"], **{"capture-output": True})["return"][
        "pid"
    ]
    deadline = time.monotonic() + 20
    while start_time(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)  # the shell itself has exited and been reaped
    assert start_time(pid) is None
    # like qemu-ga: exited only once the output pipes are closed too (cat still holds stdout)
    assert ours.cmd("guest-exec-status", pid=pid) == {"return": {"exited": False}}
    with open(fifo, "wb"):
        pass
    status = wait_status(ours, pid)
    assert status["exitcode"] == 0
    assert base64.b64decode(status["out-data"]) == b"bg\n"


def test_leftover_children_killed_on_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ctx, client = make_ours(state)
    pid = client.cmd("guest-exec", path="sleep", arg=["300"])["return"]["pid"]
    assert (state / "exec" / str(pid)).exists()
    # simulate a crash: the actor vanishes without its stop() (the child keeps running)
    node = ctx.node
    assert node is not None
    node.execs._reactor.stop()  # type: ignore[attr-defined]
    assert start_time(pid) is not None
    ctx2, _ = make_ours(state)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            waited, _status = os.waitpid(pid, os.WNOHANG)  # we are its parent in this test
            if waited:
                break
            time.sleep(0.02)
        assert waited == pid
        assert not (state / "exec" / str(pid)).exists()
        assert ctx2.counters["exec.leftovers_killed"] == 1
    finally:
        ctx2.close()
        node.execs._children.clear()  # type: ignore[attr-defined]  # reaped above by the test
        ctx.close()
    assert any(
        r["command"] == "guest-exec" and r["target"] == "sleep" and r.get("child_pid") == pid for r in audit_lines()
    )


def test_recycled_pid_is_spared(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "exec").mkdir(parents=True)
    # a record whose pid now belongs to another process (this one): start time differs
    (state / "exec" / str(os.getpid())).write_text(f"{os.getpid()} 1\n")
    ctx, _ = make_ours(state)
    try:
        assert ctx.counters["exec.leftovers_killed"] == 0
        assert not (state / "exec" / str(os.getpid())).exists()
    finally:
        ctx.close()


def test_stop_kills_running_children(tmp_path: Path) -> None:
    ctx, client = make_ours(tmp_path / "state")
    pid = client.cmd("guest-exec", path="sh", arg=["-c", "sleep 300 & sleep 300"])["return"]["pid"]
    time.sleep(0.2)
    ctx.close()
    assert start_time(pid) is None  # killed and reaped at stop, not orphaned


def test_records_kept_while_frozen(tmp_path: Path) -> None:
    state = tmp_path / "state"
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    ctx, client = make_ours(state)
    try:
        pid = client.cmd("guest-exec", path="cat", arg=[str(fifo)])["return"]["pid"]
        ctx.tell("lifecycle.frozen", {}, kind="evt")
        ctx.ask("policy.get", {})  # same actor thread, in order: the freeze is now in effect
        with open(fifo, "wb"):  # let the child finish while "frozen"
            pass
        assert wait_status(client, pid) == {"exited": True, "exitcode": 0}
        assert (state / "exec" / str(pid)).exists()  # no disk write while frozen
        ctx.tell("lifecycle.thawed", {}, kind="evt")
        ctx.ask("policy.get", {})
        assert not (state / "exec" / str(pid)).exists()
    finally:
        ctx.close()


_SERVE = """
import json, socket, sys
from concierge.actors.guestops.node import GuestOpsNode
from concierge.testing.context import FakeContext
ctx = FakeContext("guestops", {"state_dir": sys.argv[2]})
ctx.run_node(GuestOpsNode)
srv = socket.socket(socket.AF_UNIX); srv.bind(sys.argv[1]); srv.listen(1)
conn, _ = srv.accept()
for line in conn.makefile("rb"):
    req = json.loads(line)
    reply = ctx.ask(req["type"], req["body"])
    conn.sendall(json.dumps(reply.body).encode() + b"\\n")
"""


def test_children_of_a_crashed_actor_are_killed_on_restart(tmp_path: Path) -> None:
    import ctypes
    import subprocess
    import sys

    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER: orphans come to us
    state = tmp_path / "state"
    sock = str(tmp_path / "s.sock")
    actor = subprocess.Popen(
        [sys.executable, "-c", _SERVE, sock, str(state)],
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "src")},
    )
    try:
        import socket

        conn = socket.socket(socket.AF_UNIX)
        deadline = time.monotonic() + 20
        while True:
            try:
                conn.connect(sock)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                assert time.monotonic() < deadline
                time.sleep(0.02)
        conn.sendall(
            json.dumps({"type": "exec.start", "body": {"path": "sh", "arg": ["-c", "sleep 300 & sleep 300"]}}).encode()
            + b"\n"
        )
        pid = json.loads(conn.makefile("rb").readline())["pid"]
        time.sleep(0.2)
        actor.kill()  # a crash: no stop(), nothing cleaned up
        actor.wait()
        conn.close()
        assert start_time(pid) is not None  # the child tree outlived the actor
        ctx, _ = make_ours(state)
        ctx.close()
        deadline = time.monotonic() + 10
        reaped: set[int] = set()
        while time.monotonic() < deadline and pid not in reaped:
            try:
                waited, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if waited:
                reaped.add(waited)
            else:
                time.sleep(0.02)
        assert pid in reaped  # killed by the restarted actor
        assert not (state / "exec" / str(pid)).exists()
        group_gone = False
        while time.monotonic() < deadline and not group_gone:  # the background sleep too
            with contextlib.suppress(ChildProcessError):
                os.waitpid(-1, os.WNOHANG)
            try:
                os.killpg(pid, 0)
                time.sleep(0.02)
            except ProcessLookupError:
                group_gone = True
        assert group_gone
    finally:
        libc.prctl(36, 0, 0, 0, 0)
        if actor.poll() is None:
            actor.kill()
            actor.wait()

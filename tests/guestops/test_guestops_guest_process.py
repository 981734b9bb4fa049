"""Commands run for the host are plain guest processes, as under qemu-ga (issue 15 item 1):
the agent's environment variables, its negative ``oom_score_adj`` and any seccomp filter or
personality lock stay with the agent. The real qemu-ga, started with the environment a systemd
service gets, is the reference; our node runs in a process that looks like the agent under
its unit (agent variables set, ``oom_score_adj`` -500)."""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from guestops_harness import OurClient, QgaSocketClient, make_ours, start_qemu_ga

from concierge.actors.guestproc import VENDOR_DIR, guest_environment, run_guest
from concierge.testing.peers import require

pytestmark = pytest.mark.peer

PROBE = (
    "env | sort; echo oom=$(cat /proc/self/oom_score_adj); grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status;"
    " echo personality=$(cat /proc/self/personality)"
)
#: what the agent's launcher and unit put in its own environment (the issue's list)
AGENT_VARIABLES = {
    "PYTHONPATH": VENDOR_DIR,
    "CONCIERGE_LOG_FORMAT": "json",
    "WATCHDOG_PID": "1234",
    "WATCHDOG_USEC": "30000000",
    "NOTIFY_SOCKET": "/run/systemd/notify",
    "STATE_DIRECTORY": "/var/lib/concierge",
    "RUNTIME_DIRECTORY": "/run/concierge",
}


@contextlib.contextmanager
def agent_like_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process (where our node runs) with the agent's variables and OOMScoreAdjust=-500."""
    for key, value in AGENT_VARIABLES.items():
        monkeypatch.setenv(key, value)
    adj = Path("/proc/self/oom_score_adj")
    saved = adj.read_text().strip()
    try:
        adj.write_text("-500")
    except PermissionError:  # no CAP_SYS_RESOURCE (a container): any value the child must not get
        adj.write_text("300")
    try:
        yield
    finally:
        adj.write_text(saved)
        monkeypatch.undo()


@pytest.fixture
def both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[QgaSocketClient, OurClient]]:
    """qemu-ga started with this process's environment (what a service gets), then our node
    in the same process made to look like the agent under its unit."""
    require(os.geteuid() == 0, "qemu-ga differential tests need root")
    # os.environ, not the C environment: readline (loaded by pytest) exports COLUMNS/LINES there
    proc, sock = start_qemu_ga(tmp_path, env=dict(os.environ))
    qga = QgaSocketClient(sock)
    try:
        with agent_like_process(monkeypatch):
            ctx, ours = make_ours(tmp_path / "ours-state")
            try:
                yield qga, ours
            finally:
                ctx.close()
    finally:
        qga.close()
        proc.kill()
        proc.wait()


def probe(client: QgaSocketClient | OurClient, **extra: Any) -> str:
    pid = client.cmd("guest-exec", path="sh", arg=["-c", PROBE], **{"capture-output": True}, **extra)["return"]["pid"]
    deadline = time.monotonic() + 20
    while True:
        status: dict[str, Any] = client.cmd("guest-exec-status", pid=pid)["return"]
        if status["exited"] or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert status.get("exitcode") == 0, status
    text = base64.b64decode(status["out-data"]).decode()
    return "".join(line for line in text.splitlines(True) if not line.startswith("PYTEST_CURRENT_TEST="))


def test_exec_child_is_a_plain_guest_process(both: tuple[QgaSocketClient, OurClient]) -> None:
    qga, ours = both
    theirs, mine = probe(qga), probe(ours)
    assert "oom=0" in mine
    for key in AGENT_VARIABLES:
        assert f"{key}=" not in mine
    # the test run's own CONCIERGE_* variables (e.g. CONCIERGE_REQUIRE_PEERS under CI) reach
    # qemu-ga's child but are ours by name, so ours strips them by design
    theirs = "".join(line for line in theirs.splitlines(keepends=True) if not line.startswith("CONCIERGE_"))
    assert mine == theirs  # same environment, oom_score_adj, seccomp mode and personality


def test_exec_with_env_gets_exactly_that_env(both: tuple[QgaSocketClient, OurClient]) -> None:
    qga, ours = both
    env = {"env": ["FOO=bar", "PATH=/usr/bin:/bin"]}
    assert probe(ours, **env) == probe(qga, **env)


def test_helpers_run_with_guest_environment_and_oom_zero(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """hooks, chpasswd, hwclock and the shutdown binaries go through run_guest/popen_guest."""
    with agent_like_process(monkeypatch):
        check_helper(tmp_path)


def check_helper(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with out.open("wb") as handle:
        status = run_guest(["sh", "-c", PROBE], timeout_s=20, stdout=handle, stdin=subprocess.DEVNULL)
    assert status == 0
    text = out.read_text()
    assert "oom=0" in text
    assert "Seccomp:\t0" in text
    for key in AGENT_VARIABLES:
        assert f"{key}=" not in text
    assert Path("/proc/self/oom_score_adj").read_text().strip() in ("-500", "300")  # the agent kept its own


def test_guest_environment_keeps_the_service_environment() -> None:
    env = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "INVOCATION_ID": "x", "PYTHONPATH": VENDOR_DIR, "CONCIERGE_X": "1"}
    assert guest_environment(env) == {"PATH": "/usr/bin", "LANG": "C.UTF-8", "INVOCATION_ID": "x"}
    # an administrator's own PYTHONPATH (on the unit) stays, minus what the launcher added
    assert guest_environment({"PYTHONPATH": f"{VENDOR_DIR}:/opt/site"}) == {"PYTHONPATH": "/opt/site"}

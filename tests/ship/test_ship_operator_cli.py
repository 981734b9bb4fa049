"""The operator CLI as people type it, against a real agent: options on either side of the
subcommand, readable action results, ``--wait`` outcomes with reasons and exit codes, status
explaining why an actor waits, the supervisor's own log, journal priorities and STATUS=."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from concierge.testing.rpc import ActorClient

ECHO = {"entry": "concierge.testing.nodes:EchoNode"}
FAST = "[supervisor]\nbackoff_base_s = 0.05\n[agent]\nheartbeat_interval_s = 0.2\n"


def concierge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "concierge", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_global_options_before_or_after_the_subcommand(agent_factory: Any) -> None:
    agent = agent_factory({"one": ECHO}, extra=FAST)
    agent.start()
    run_dir = str(agent.runtime_dir)
    after = concierge("status", "--json", "--runtime-dir", run_dir, env=agent.env)
    before = concierge("--json", "--runtime-dir", run_dir, "status", env=agent.env)
    assert after.returncode == before.returncode == 0, after.stderr
    assert json.loads(after.stdout)["actors"][0]["id"] == json.loads(before.stdout)["actors"][0]["id"] == "one"
    mixed = concierge("--runtime-dir", run_dir, "metrics", "--timeout", "9", "--json", env=agent.env)
    assert mixed.returncode == 0 and json.loads(mixed.stdout)["actors"][0]["id"] == "one"
    version = concierge("--version")
    assert version.returncode == 0 and version.stdout.startswith("concierge ")
    doctor = concierge("doctor", "--json")
    assert doctor.returncode in (0, 1, 4) and isinstance(json.loads(doctor.stdout), dict | list)


def test_actions_print_text_and_json_on_request(agent_factory: Any) -> None:
    agent = agent_factory({"one": ECHO, "two": ECHO}, extra=FAST)
    agent.start()
    restarted = agent.cli("restart", "one", "--wait")
    assert (restarted.returncode, restarted.stdout.strip()) == (0, "one: restarted"), restarted.stderr
    stopped = agent.cli("stop", "two", "--wait", "--json")
    assert stopped.returncode == 0 and json.loads(stopped.stdout)["states"] == {"two": "STOPPED"}
    table = agent.cli("status")
    two = next(line for line in table.stdout.splitlines() if line.startswith("two "))
    assert "STOPPED" in two and " - " in two.replace("  ", " "), "a stopped actor has no uptime"
    started = agent.cli("start", "two")
    assert (started.returncode, started.stdout.strip()) == (0, "two: starting")
    agent.wait_for(lambda s: all(a["state"] == "RUNNING" for a in s["actors"]), 20, "two running again")
    reload = agent.cli("reload")
    assert (reload.returncode, reload.stdout.strip()) == (0, "reloaded: no change")
    table = agent.cli("status").stdout
    assert "RESTARTS = recent/total" in table, "a table with restarts explains the column"


def test_wait_on_an_actor_whose_resource_is_absent_stops_at_waiting_with_its_reason(agent_factory: Any) -> None:
    """An actor that exits 69 (its device or service is absent) is WAITING with the reason it
    gave, and ``--wait`` stops there at once with exit 5. (sso without logind used to be the
    example; it now serves sessions from utmp instead of waiting.)"""
    absent = {"entry": "concierge.testing.nodes:UnavailableNode"}
    agent = agent_factory({"one": ECHO, "dev": absent}, extra=FAST)
    agent.start(wait=False)
    agent.wait_for(lambda s: any(a["waiting"] for a in s["actors"]), 30, "dev WAITING")
    table = agent.cli("status")
    assert table.returncode == 0, "a waiting actor is not a failure of the agent"
    assert "WAITING" in table.stdout
    assert "dev: waiting: device not there yet" in table.stdout
    assert "device not there yet" in agent.actor("dev")["reason"]
    started = time.monotonic()
    result = agent.cli("restart", "dev", "--wait")
    elapsed = time.monotonic() - started
    assert result.returncode == 5, (result.stdout, result.stderr)
    assert result.stdout.startswith("dev: waiting: device not there yet")
    assert elapsed < 10, f"--wait must stop once the outcome is known, took {elapsed:.1f} s (not 60 s)"
    as_json = json.loads(agent.cli("restart", "dev", "--wait", "--json").stdout)
    assert as_json["states"] == {"dev": "WAITING"} and "device not there yet" in as_json["reasons"]["dev"]


def test_wait_on_a_fatal_actor_names_it_and_exits_4(agent_factory: Any) -> None:
    bad = {"entry": "concierge.testing.nodes:ConfigErrorNode"}
    agent = agent_factory({"one": ECHO, "bad": bad}, extra=FAST)
    agent.start(wait=False)
    agent.wait_for(lambda s: any(a["state"] == "FATAL" for a in s["actors"]), 30, "bad FATAL")
    result = agent.cli("start", "bad", "--wait")
    assert result.returncode == 4
    assert result.stdout.startswith("bad: fatal: configuration error: not restarted: config error:")
    assert "colour" in result.stdout, "the actor's own reason (the key it refused) is shown"


def test_logs_supervisor_reaches_the_supervisors_own_log(agent_factory: Any) -> None:
    agent = agent_factory({"one": ECHO}, extra=FAST)
    agent.start()
    agent.cli("restart", "one", "--wait")
    logs = agent.cli("logs", "supervisor", "-n", "50")
    assert logs.returncode == 0, logs.stderr
    assert "spawned one" in logs.stdout and "one exited" in logs.stdout


def test_journal_lines_carry_priorities_and_children_keep_theirs(agent_factory: Any, tmp_path: Path) -> None:
    """With stderr the journal's stream (JOURNAL_STREAM = its device:inode), every line starts
    with its syslog priority: an actor's config error is <3>, the supervisor's info <6>."""
    bad = {"entry": "concierge.testing.nodes:ConfigErrorNode"}
    agent = agent_factory({"one": ECHO, "bad": bad}, extra=FAST)
    agent.log_path.touch()
    info = os.stat(agent.log_path)
    agent.env["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
    agent.start(wait=False)
    agent.wait_for(lambda s: any(a["state"] == "FATAL" for a in s["actors"]), 30, "bad FATAL")
    lines = agent.log_path.read_text().splitlines()
    assert lines and all(line[:1] == "<" and line[2:3] == ">" for line in lines), lines[:5]
    assert any(line.startswith("<3>") and "config error" in line for line in lines)
    assert any(line.startswith("<6>") and "spawned one" in line for line in lines)
    kept = agent.cli("logs", "bad").stdout
    assert "config error" in kept and "<3>" not in kept, "the ring keeps lines without the prefix"


def test_no_priority_prefix_when_stderr_is_not_the_journal(agent_factory: Any) -> None:
    agent = agent_factory({"one": ECHO}, extra=FAST, env={"JOURNAL_STREAM": "1:1"})
    agent.start()
    text = agent.log_path.read_text()
    assert "spawned one" in text and "<6>" not in text


def test_systemd_status_line_follows_the_actors(agent_factory: Any, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(20)
    agent = agent_factory(
        {"one": {**ECHO, "essential": True}, "two": ECHO}, extra=FAST, env={"NOTIFY_SOCKET": str(path)}
    )
    try:
        agent.start()
        seen: list[str] = []

        def status_until(text: str) -> None:
            while not any(text in m for m in seen):
                seen.append(sock.recv(4096).decode())

        status_until("STATUS=")
        assert "READY=1" in seen[0]
        status_until("2/2 actors running")
        agent.cli("stop", "two", "--wait")
        status_until("STATUS=1/2 actors running")
        agent.cli("start", "two", "--wait")
        seen.clear()
        status_until("STATUS=2/2 actors running")
        with ActorClient(agent.runtime_dir, "tester") as client:
            client.request("one", "note", {"type": "freeze.state", "body": {"frozen": True, "deadline_s": 30}})
            status_until("STATUS=2/2 actors running, frozen")
            client.request("one", "note", {"type": "freeze.state", "body": {"frozen": False}})
        seen.clear()
        status_until("STATUS=2/2 actors running")
    finally:
        sock.close()


def test_exit_codes_are_documented_in_the_man_page() -> None:
    man = (Path(__file__).resolve().parents[2] / "packaging" / "man" / "concierge.1").read_text()
    section = man.split(".SH EXIT STATUS", 1)[1].split(".SH ", 1)[0]
    for code in ("0", "1", "2", "3", "4", "5", "69", "70", "75", "78"):
        assert f"\n.B {code}\n" in section, f"exit status {code} is not in concierge(1)"


def test_each_process_shows_its_role_in_ps(agent_factory: Any) -> None:
    agent = agent_factory({"one": ECHO, "two": ECHO}, extra=FAST)
    agent.start()
    assert agent.proc is not None
    status = agent.status()

    def cmdline(pid: int) -> str:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()

    assert cmdline(agent.proc.pid) == "concierge: supervisor"
    for actor in status["actors"]:
        assert cmdline(actor["pid"]) == f"concierge: {actor['id']}"
        assert Path(f"/proc/{actor['pid']}/comm").read_text().strip() == f"cc-{actor['id']}"
    ps = subprocess.run(
        ["ps", "-o", "args=", "-p", str(status["actors"][0]["pid"])], capture_output=True, text=True, check=True
    )
    assert ps.stdout.strip() == "concierge: one"


def test_run_takes_runtime_dir_after_the_subcommand(tmp_path: Path) -> None:
    from concierge.testing.harness import catalog

    config = tmp_path / "c.toml"
    config.write_text(catalog({"one": ECHO}, extra=FAST))
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    agent = subprocess.Popen(
        [sys.executable, "-m", "concierge", "run", "--runtime-dir", str(run_dir), "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        status = concierge("status", "--runtime-dir", str(run_dir), env=env)
        while status.returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
            status = concierge("status", "--runtime-dir", str(run_dir), env=env)
        assert status.returncode == 0 and "one" in status.stdout, status.stderr
    finally:
        agent.terminate()
        agent.wait(timeout=20)


def test_wait_shows_each_state_change_on_a_terminal(agent_factory: Any) -> None:
    import pty

    agent = agent_factory({"one": ECHO}, extra=FAST)
    agent.start()
    master, slave = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "concierge", "--runtime-dir", str(agent.runtime_dir), "restart", "one", "--wait"],
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
            env=agent.env,
            timeout=60,
            check=False,
        )
        os.close(slave)
        slave = -1
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert result.returncode == 0 and result.stdout.strip() == "one: restarted"
    progress = shown.decode()
    assert "one: STOPPING..." in progress and "one: STARTING..." in progress and "one: RUNNING..." in progress


def test_status_renders_a_state_it_does_not_know_with_its_reason() -> None:
    """States added to the supervisor later (e.g. DORMANT) show as they come, with their reason."""
    from concierge.supervisor.cli_render import render_status

    actor = {"id": "input", "state": "DORMANT", "pid": None, "uptime_s": 12.0, "restarts": 0, "restarts_recent": 0}
    actor |= {"health": "unknown", "detail": "", "last_exit": "", "waiting": False, "reason": "no tablet yet"}
    text = render_status({"version": "x", "pid": 1, "uptime_s": 5.0, "actors": [actor]}, tty=True)
    row = next(line for line in text.splitlines() if line.startswith("input"))
    assert "DORMANT" in row and "12.0s" not in row, "no uptime for an actor that is not running"
    assert "input: dormant: no tablet yet" in text


def test_log_format_is_text_on_a_terminal_and_json_otherwise(agent_factory: Any) -> None:
    import pty

    from concierge.testing.harness import AgentHarness, catalog

    root = agent_factory({"one": ECHO}, extra=FAST).root
    config = root / "tty.toml"
    config.write_text(catalog({"one": ECHO}, extra=FAST))
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    cmd = [sys.executable, "-m", "concierge", "run", "--runtime-dir", str(root / "r"), "--config", str(config)]
    agent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 20
        while b"actor ready" not in seen and time.monotonic() < deadline:
            seen += os.read(master, 65536)
    finally:
        agent.terminate()
        agent.wait(timeout=20)
        os.close(master)
    lines = [line for line in seen.decode(errors="replace").splitlines() if "spawned one" in line]
    assert lines and not lines[0].lstrip().startswith("{"), lines
    assert "supervisor actor.spawned: spawned one" in lines[0]
    (root / "piped").mkdir()
    piped = AgentHarness(root / "piped", catalog({"one": ECHO}, extra=FAST))  # no --log-format: the default
    try:
        piped.start()
    finally:
        piped.stop()
    spawned = [line for line in piped.log_path.read_text().splitlines() if "spawned one" in line]
    assert spawned and json.loads(spawned[0])["event"] == "actor.spawned", "JSON when stderr is not a terminal"

"""The operator CLI and control socket against a real agent; config errors; single instance."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from concierge.testing.peers import require_root
from concierge.testing.rpc import ActorClient

ECHO = {"entry": "concierge.testing.nodes:EchoNode"}
FAST = "[supervisor]\nbackoff_base_s = 0.05\n[agent]\nheartbeat_interval_s = 0.2\n"


def test_status_json_lists_every_actor_with_its_fields(agent_factory: Any) -> None:
    agent = agent_factory({"one": ECHO, "two": ECHO}, extra=FAST)
    agent.start()
    status = agent.status()
    assert [a["id"] for a in status["actors"]] == ["one", "two"]
    for entry in status["actors"]:
        assert entry["state"] == "RUNNING"
        assert isinstance(entry["pid"], int)
        assert entry["restarts"] == 0
        assert entry["health"] == "ok"
    table = agent.cli("status")
    assert table.returncode == 0
    assert "RUNNING" in table.stdout and "ACTOR" in table.stdout


def test_stop_start_restart_wait_and_exit_codes(agent_factory: Any) -> None:
    agent = agent_factory({"one": ECHO, "two": ECHO}, extra=FAST)
    agent.start()
    old = agent.actor("one")["pid"]
    result = agent.cli("restart", "one", "--wait", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["states"] == {"one": "RUNNING"}
    assert agent.actor("one")["pid"] != old
    assert agent.cli("stop", "two", "--wait").returncode == 0
    assert agent.actor("two")["state"] == "STOPPED"
    assert agent.cli("status").returncode == 4, "status must flag an actor that is not running"
    assert agent.cli("health").returncode == 4
    assert agent.cli("start", "two", "--wait").returncode == 0
    assert agent.cli("health").returncode == 0
    assert agent.cli("restart", "nope").returncode == 1


def test_cli_reports_unreachable_agent(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "concierge", "--runtime-dir", str(tmp_path), "status"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 3
    assert "no agent socket" in result.stderr


def test_logs_and_metrics(agent_factory: Any) -> None:
    agent = agent_factory({"one": ECHO}, extra=FAST)
    agent.start()
    logs = agent.cli("logs", "one", "-n", "5")
    assert "actor ready" in logs.stdout
    metrics = json.loads(agent.cli("--json", "metrics").stdout)
    entry = metrics["actors"][0]
    assert entry["pss_bytes"] > 0 and entry["rss_bytes"] > 0 and entry["threads"] >= 1
    follow = subprocess.Popen(
        [sys.executable, "-m", "concierge", "--runtime-dir", str(agent.runtime_dir), "logs", "one", "-n", "0", "-f"],
        stdout=subprocess.PIPE,
        text=True,
        env=agent.env,
    )
    try:
        time.sleep(1.0)
        agent.cli("restart", "one", "--wait")
        assert follow.stdout is not None
        line = follow.stdout.readline()
        assert "one" in line
    finally:
        follow.kill()
        follow.wait()


def test_status_never_hangs_on_a_stuck_actor(agent_factory: Any) -> None:
    agent = agent_factory(
        {"hang": {"entry": "concierge.testing.nodes:HangNode"}}, extra=FAST + "actor_unresponsive_s = 30.0\n"
    )
    agent.start()
    with ActorClient(agent.runtime_dir, "tester") as client:
        client.cast("hang", "hang")
    time.sleep(0.5)
    started = time.monotonic()
    assert agent.cli("status").returncode == 0
    assert time.monotonic() - started < 10


def test_control_socket_refuses_other_users(tmp_path: Path) -> None:
    require_root("to switch to another uid")
    import tempfile

    from concierge.testing.harness import AgentHarness, catalog

    root = Path(tempfile.mkdtemp(prefix="ccperm-", dir="/tmp"))
    root.chmod(0o755)
    agent = AgentHarness(root, catalog({"one": ECHO}, extra=FAST), args=("--log-format", "text"))
    try:
        agent.start()
        ctl = agent.runtime_dir / "ctl.ipc"
        assert ctl.stat().st_mode & 0o777 == 0o600
        probe = (
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
            "try:\n s.connect(sys.argv[1])\nexcept PermissionError:\n sys.exit(13)\n"
        )
        result = subprocess.run(
            ["/usr/bin/python3", "-c", probe, str(ctl)], user=65534, group=65534, check=False, cwd="/"
        )
        assert result.returncode == 13, "another uid must not reach the operator socket"
    finally:
        agent.stop()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def test_config_typo_names_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[supervisor]\nintensity = 3\nrestrat = 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "concierge", "--runtime-dir", str(tmp_path / "run"), "run", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 78
    assert str(config) in result.stderr and "supervisor.restrat" in result.stderr
    check = subprocess.run(
        [sys.executable, "-m", "concierge", "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 78 and "supervisor.restrat" in check.stderr
    dropin = tmp_path / "concierge.d"
    dropin.mkdir()
    config.write_text("")
    (dropin / "10-x.toml").write_text("[actors.monitor]\nessential = 'yes'\n")
    check = subprocess.run(
        [sys.executable, "-m", "concierge", "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 78 and "10-x.toml" in check.stderr and "actors.monitor.essential" in check.stderr


def test_second_instance_refused_and_stale_sockets_cleaned(agent_factory: Any) -> None:
    first = agent_factory({"one": ECHO}, extra=FAST, name="same")
    first.start()
    second = agent_factory({"one": ECHO}, extra=FAST, name="same")
    second.start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(timeout=30) == 75
    assert "another concierge" in second.log_tail()
    assert first.cli("status").returncode == 0, "the refused start must not steal the sockets"
    assert first.proc is not None
    first.proc.kill()
    first.proc.wait()
    time.sleep(0.5)
    assert (first.runtime_dir / "ctl.ipc").exists(), "SIGKILL leaves a stale socket behind"
    third = agent_factory({"one": ECHO}, extra=FAST, name="same")
    third.start()
    assert third.cli("status").returncode == 0


def test_systemd_notify_ready(agent_factory: Any, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30)
    agent = agent_factory({"one": {**ECHO, "essential": True}}, extra=FAST, env={"NOTIFY_SOCKET": str(path)})
    agent.start()
    messages = [sock.recv(4096).decode()]
    assert "READY=1" in messages[0]
    agent.stop()
    sock.settimeout(5)
    assert "STOPPING=1" in sock.recv(4096).decode()
    sock.close()


def test_sigterm_stops_in_reverse_order(agent_factory: Any) -> None:
    agent = agent_factory({"first": ECHO, "second": ECHO, "third": ECHO}, extra=FAST)
    agent.start()
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=30) == 0
    order = [line.split()[4] for line in agent.log_tail(60).splitlines() if "actor.exited" in line]
    assert order == ["third", "second", "first"]


def test_reload_applies_added_changed_removed(agent_factory: Any) -> None:
    agent = agent_factory({"keep": ECHO, "drop": ECHO, "change": ECHO}, extra=FAST)
    agent.start()
    keep_pid = agent.actor("keep")["pid"]
    change_pid = agent.actor("change")["pid"]
    from concierge.testing.harness import catalog

    agent.config_path.write_text(
        catalog({"keep": ECHO, "change": {**ECHO, "settings": {"x": 1}}, "new": ECHO}, extra=FAST)
    )
    result = agent.cli("--json", "reload")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"added": ["new"], "changed": ["change"], "removed": ["drop"]}
    status = agent.wait_for(
        lambda s: (
            {a["id"] for a in s["actors"]} == {"keep", "change", "new"}
            and all(a["state"] == "RUNNING" for a in s["actors"])
        ),
        20,
        "reload applied",
    )
    by_id = {a["id"]: a["pid"] for a in status["actors"]}
    assert by_id["keep"] == keep_pid, agent.log_tail(60)
    assert by_id["change"] != change_pid


def test_prometheus_metrics_and_textfile(agent_factory: Any, tmp_path: Path) -> None:
    agent = agent_factory({"one": ECHO}, extra=FAST)
    agent.start()
    textfile = tmp_path / "concierge.prom"
    result = agent.cli("metrics", "--format", "prometheus", "--textfile", str(textfile))
    assert result.returncode == 0, result.stderr
    assert 'concierge_actor_state{actor="one",state="RUNNING"} 1' in result.stdout
    assert textfile.read_text() == result.stdout


def test_doctor_reports_and_exits_with_a_status(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "concierge", "--json", "doctor"], capture_output=True, text=True, check=False, timeout=60
    )
    report = json.loads(result.stdout)
    assert result.returncode in (0, 1, 4)
    assert {f["area"] for f in report["findings"]} >= {"ports", "stock-agents", "devices", "services", "policy"}

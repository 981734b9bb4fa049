"""Dormant and on-demand actors in a real ``concierge run``: run only what the guest needs.

A QGA-only guest runs the transport alone at start; a routed command wakes its actor and is
answered; an on-demand actor goes back to DORMANT after its idle time; a crash restarts it
alone; ``start``/``stop`` work on it; a frozen lifecycle is never stopped as idle.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil

from concierge.testing.harness import AgentHarness
from concierge.testing.qga_peer import RawClient
from concierge.testing.rpc import ActorClient

FAST = (
    "[supervisor]\nbackoff_base_s = 0.05\n"
    "[agent]\nheartbeat_interval_s = 0.2\nheartbeat_timeout_s = 3.0\nactor_unresponsive_s = 1.0\n"
)
FRONT = {"entry": "concierge.testing.nodes:EchoNode"}


def lazy(idle_s: float = 0.0) -> dict[str, Any]:
    return {"entry": "concierge.testing.nodes:EchoNode", "activation": "on-demand", "idle_stop_s": idle_s}


def entry(status: dict[str, Any], actor_id: str) -> dict[str, Any]:
    return next(a for a in status["actors"] if a["id"] == actor_id)


def ask(agent: Any, dst: str, type_: str, body: Any = None) -> dict[str, Any]:
    """Have the supervised actor ``front`` send a request to ``dst`` (a child of the agent
    is the requester, as the transport is for a QGA command)."""
    with ActorClient(agent.runtime_dir, "tester") as client:
        reply = client.request("front", "ask", {"dst": dst, "type": type_, "body": body}, timeout_s=10.0)
    assert reply.ok, reply  # the asking itself; the answer of dst is in the body
    result: dict[str, Any] = reply.body
    return result


def qga(path: Path, command: str) -> dict[str, Any]:
    with RawClient(path, timeout_s=15.0) as client:
        reply: dict[str, Any] = json.loads(client.exchange(json.dumps({"execute": command}).encode())[0])
    return reply


def actor_processes(agent: AgentHarness) -> list[str]:
    assert agent.proc is not None
    names = [p.name() for p in psutil.Process(agent.proc.pid).children(recursive=True)]
    # the fork server is no actor (it only forks them, and retires when idle)
    return sorted(name for name in names if name.startswith("cc-") and name != "cc-forkserver")


def test_qga_only_agent_starts_only_the_transport_and_a_command_wakes_its_actor(tmp_path: Path) -> None:
    """The built-in catalog with one QGA channel: only the transport runs until the host asks."""
    sock = tmp_path / "qga.sock"
    config = (
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[actors.guestops.settings]\nstate_dir = "{tmp_path / "guestops"}"\n'
        f'[actors.lifecycle.settings]\nstate_dir = "{tmp_path / "lifecycle"}"\n'
    )
    agent = AgentHarness(tmp_path, config, args=("--log-format", "text", "--channel", f"qga=unix-listen:{sock}"))
    agent.start()
    try:
        status = agent.status()
        states = {a["id"]: (a["state"], a["dormant"]) for a in status["actors"]}
        assert states == {
            "transport": ("RUNNING", ""),
            "lifecycle": ("DORMANT", "on demand"),
            "monitor": ("DORMANT", "on demand"),
            "guestops": ("DORMANT", "on demand"),
            "sso": ("DORMANT", "no ovirt channel"),
            "input": ("DORMANT", "no spice channel"),
            "session": ("DORMANT", "no spice channel"),
        }
        assert actor_processes(agent) == ["cc-transport"]
        assert qga(sock, "guest-ping") == {"return": {}}
        # the table for people says DORMANT and why; a dormant actor is not a health failure
        table = agent.cli("status")
        assert table.returncode == 0, table.stdout + table.stderr
        assert "DORMANT" in table.stdout and "no spice channel" in table.stdout
        assert agent.cli("health").returncode == 0

        reply = qga(sock, "guest-get-osinfo")
        assert reply["return"]["kernel-release"] == os.uname().release
        assert entry(agent.status(), "monitor")["state"] == "RUNNING"
        assert "cc-monitor" in actor_processes(agent)
        # what the guest has no channel for stays asleep
        for actor_id in ("sso", "input", "session"):
            assert entry(agent.status(), actor_id)["state"] == "DORMANT"
    finally:
        agent.stop()


def test_request_wakes_an_on_demand_actor_which_goes_idle_again(agent_factory: Any) -> None:
    agent = agent_factory({"front": FRONT, "lazy": lazy(idle_s=1.0)}, extra=FAST)
    agent.start()
    assert entry(agent.status(), "lazy")["state"] == "DORMANT"
    answer = ask(agent, "lazy", "echo", "hello")
    assert answer["ok"] and answer["body"] == "hello"
    status = agent.status()
    assert entry(status, "lazy")["state"] == "RUNNING"
    # traffic keeps it up
    for _ in range(6):
        assert ask(agent, "lazy", "echo", 1)["ok"]
        time.sleep(0.3)
    assert entry(agent.status(), "lazy")["state"] == "RUNNING"
    status = agent.wait_for(lambda s: entry(s, "lazy")["state"] == "DORMANT", 10, "lazy idle again")
    assert entry(status, "lazy")["dormant"].startswith("idle")
    assert entry(status, "lazy")["restarts"] == 0, "an idle stop is not a restart"
    # and the next request wakes it again
    assert ask(agent, "lazy", "echo", "again")["body"] == "again"
    assert entry(agent.status(), "lazy")["wakes"] == 2


def test_crash_of_an_on_demand_actor_restarts_it_alone(agent_factory: Any) -> None:
    agent = agent_factory({"front": FRONT, "lazy": lazy()}, extra=FAST)
    agent.start()
    first = ask(agent, "lazy", "pid")["body"]
    front_pid = entry(agent.status(), "front")["pid"]
    os.kill(first, signal.SIGKILL)
    status = agent.wait_for(
        lambda s: entry(s, "lazy")["state"] == "RUNNING" and entry(s, "lazy")["pid"] not in (None, first),
        15,
        "lazy restarted",
    )
    assert "SIGKILL" in entry(status, "lazy")["last_exit"]
    assert entry(status, "lazy")["restarts"] == 1
    assert entry(status, "front")["pid"] == front_pid
    assert ask(agent, "lazy", "pid")["body"] == entry(status, "lazy")["pid"]


def test_start_and_stop_of_a_dormant_actor(agent_factory: Any) -> None:
    agent = agent_factory({"front": FRONT, "lazy": lazy(idle_s=30.0)}, extra=FAST)
    agent.start()
    started = agent.cli("--json", "start", "lazy", "--wait")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["states"] == {"lazy": "RUNNING"}
    stopped = agent.cli("--json", "stop", "lazy", "--wait")
    assert json.loads(stopped.stdout)["states"] == {"lazy": "STOPPED"}
    # an operator's stop is not dormancy: a request does not start it behind their back
    answer = ask(agent, "lazy", "echo", "x")
    assert not answer["ok"]
    assert entry(agent.status(), "lazy")["state"] == "STOPPED"
    assert agent.cli("--json", "start", "lazy", "--wait").returncode == 0
    assert ask(agent, "lazy", "echo", "y")["body"] == "y"


def test_unmet_requirement_is_not_woken_by_a_request(agent_factory: Any) -> None:
    needs_spice = {**lazy(), "requires": ["channel:spice"]}
    agent = agent_factory({"front": FRONT, "spicy": needs_spice}, extra=FAST)
    agent.start()
    assert entry(agent.status(), "spicy")["dormant"] == "no spice channel"
    assert not ask(agent, "spicy", "echo", 1)["ok"]
    assert entry(agent.status(), "spicy")["state"] == "DORMANT"


def test_a_frozen_lifecycle_is_never_stopped_as_idle(tmp_path: Path) -> None:
    """Real lifecycle, on demand with a 1 s idle time, freezing a loop filesystem of its own."""
    from concierge.testing.loopfs import loop_fs

    sock = tmp_path / "qga.sock"
    with loop_fs("ext4") as mnt:
        config = (
            FAST
            + "[actors.monitor]\nenabled = false\n[actors.guestops]\nenabled = false\n"
            + "[actors.lifecycle]\nidle_stop_s = 1.0\n"
            + "[actors.lifecycle.settings]\n"
            + f'only_mountpoints = ["{mnt}"]\nfsfreeze_hook = ""\nstate_dir = "{tmp_path / "lc"}"\n'
        )
        agent = AgentHarness(tmp_path, config, args=("--log-format", "text", "--channel", f"qga=unix-listen:{sock}"))
        agent.start()
        try:
            with RawClient(sock, timeout_s=15.0) as client:

                def cmd(name: str) -> Any:
                    return json.loads(client.exchange(json.dumps({"execute": name}).encode())[0])["return"]

                assert cmd("guest-fsfreeze-freeze") == 1
                pid = entry(agent.status(), "lifecycle")["pid"]
                time.sleep(3.0)  # three idle times without a message
                status = agent.status()
                assert entry(status, "lifecycle")["state"] == "RUNNING"
                assert entry(status, "lifecycle")["pid"] == pid
                assert cmd("guest-fsfreeze-status") == "frozen"
                assert cmd("guest-fsfreeze-thaw") == 1
            agent.wait_for(lambda s: entry(s, "lifecycle")["state"] == "DORMANT", 15, "lifecycle idle after thaw")
        finally:
            agent.stop()


def test_requirements_and_idle_clock_decisions() -> None:
    """The pure rules behind DORMANT: unmet requirements, who may be woken, when idle is due."""
    from concierge.config.schema import ActorSection
    from concierge.supervisor import dormancy
    from concierge.supervisor.state import State

    spice = ActorSection(entry="x:Y", requires=["channel:spice", "path:/nonexistent-concierge-test"])
    assert dormancy.unmet_requirement(spice, {"qga"}) == "no spice channel"
    assert dormancy.unmet_requirement(spice, {"spice"}) == "/nonexistent-concierge-test is absent"
    assert dormancy.unmet_requirement(spice, {"spice"}, exists=lambda _p: True) == ""
    on_demand = ActorSection(entry="x:Y", activation="on-demand", idle_stop_s=10.0)
    assert dormancy.initial_reason(on_demand, set()) == dormancy.ON_DEMAND
    assert dormancy.initial_reason(ActorSection(entry="x:Y"), set()) == ""
    assert dormancy.wakeable(on_demand, State.DORMANT, dormancy.IDLE)
    assert not dormancy.wakeable(on_demand, State.DORMANT, "no spice channel")
    assert not dormancy.wakeable(on_demand, State.STOPPED, "")  # the operator stopped it

    clock = dormancy.IdleClock()
    clock.reset(100.0)
    clock.observe({"msg.in": 5}, "", 101.0)
    assert not clock.due(on_demand, 110.0)
    assert clock.due(on_demand, 111.0)
    clock.observe({"msg.in": 6}, "", 112.0)  # a message arrived: idle counts from here
    assert not clock.due(on_demand, 121.0)
    clock.observe({"msg.in": 6}, "1 open files", 130.0)  # work held: never due
    assert not clock.due(on_demand, 1000.0)
    always = ActorSection(entry="x:Y", idle_stop_s=1.0)
    assert not clock.due(always, 1e9)


def test_dormancy_keys_are_validated(tmp_path: Path) -> None:
    from concierge.config.loader import load_config
    from concierge.errors import ConfigError

    bad_values = ('requires = ["channel:vnc"]', 'requires = ["path:relative"]', "idle_stop_s = -1", 'activation = "x"')
    for bad in bad_values:
        path = tmp_path / "bad.toml"
        path.write_text(f"[actors.monitor]\n{bad}\n")
        try:
            load_config(path, explicit=True)
        except ConfigError as err:
            assert "actors.monitor" in str(err), err
        else:
            raise AssertionError(f"accepted {bad}")


def test_fork_server_is_retired_when_idle_and_forked_again_for_a_wake(agent_factory: Any) -> None:
    """With nothing to fork for FORKSERVER_IDLE_S the fork server exits (its pages are ~3 MB
    of the idle agent); a wake-up, and a crash restart, fork a new one and work as before."""
    from concierge.supervisor.forkkeeper import FORKSERVER_IDLE_S

    agent = agent_factory({"front": FRONT, "lazy": lazy(idle_s=1.0)}, extra=FAST)
    agent.start()
    supervisor = psutil.Process(agent.proc.pid)

    def fork_servers() -> list[psutil.Process]:
        return [p for p in supervisor.children() if p.name() == "cc-forkserver"]

    assert len(fork_servers()) == 1
    deadline = time.monotonic() + FORKSERVER_IDLE_S + 10
    while fork_servers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not fork_servers(), "the fork server stayed although nothing was forked"
    lazy_pid = ask(agent, "lazy", "pid")["body"]
    assert psutil.Process(lazy_pid).ppid() == agent.proc.pid  # re-parented as before
    assert psutil.Process(lazy_pid).name() == "cc-lazy"
    assert len(fork_servers()) == 1
    front_pid = entry(agent.status(), "front")["pid"]
    os.kill(front_pid, signal.SIGKILL)
    agent.wait_for(
        lambda s: entry(s, "front")["state"] == "RUNNING" and entry(s, "front")["pid"] not in (None, front_pid),
        15,
        "front restarted",
    )
    assert ask(agent, "lazy", "echo", "still")["body"] == "still"


def test_guestops_with_an_uncollected_exec_child_is_not_stopped_as_idle(tmp_path: Path) -> None:
    """Real guestops, on demand with a 1 s idle time: the exec child and its status live in
    its process only, so it stays up until the host collected the status, then goes idle."""
    sock = tmp_path / "qga.sock"
    config = (
        FAST
        + "[actors.monitor]\nenabled = false\n[actors.lifecycle]\nenabled = false\n"
        + "[actors.guestops]\nidle_stop_s = 1.0\n"
        + f'[actors.guestops.settings]\nstate_dir = "{tmp_path / "guestops"}"\n'
    )
    agent = AgentHarness(tmp_path, config, args=("--log-format", "text", "--channel", f"qga=unix-listen:{sock}"))
    agent.start()
    try:
        with RawClient(sock, timeout_s=15.0) as client:

            def cmd(name: str, arguments: dict[str, Any]) -> Any:
                request = json.dumps({"execute": name, "arguments": arguments}).encode()
                return json.loads(client.exchange(request)[0])["return"]

            child = cmd("guest-exec", {"path": "/bin/sleep", "arg": ["2"]})["pid"]
            pid = entry(agent.status(), "guestops")["pid"]
            time.sleep(4.0)  # the child ran 2 s and exited; nobody asked for 2 s more
            status = agent.status()
            assert entry(status, "guestops")["state"] == "RUNNING"
            assert entry(status, "guestops")["pid"] == pid
            assert cmd("guest-exec-status", {"pid": child}) == {"exited": True, "exitcode": 0}
        agent.wait_for(lambda s: entry(s, "guestops")["state"] == "DORMANT", 15, "guestops idle once collected")
    finally:
        agent.stop()


def test_reload_starts_an_actor_made_always(agent_factory: Any) -> None:
    agent = agent_factory({"front": FRONT, "lazy": lazy()}, extra=FAST)
    agent.start()
    assert entry(agent.status(), "lazy")["state"] == "DORMANT"
    text = agent.config_path.read_text().replace('activation = "on-demand"', 'activation = "always"')
    agent.config_path.write_text(text)
    reloaded = agent.cli("--json", "reload")
    assert reloaded.returncode == 0, reloaded.stderr
    assert "lazy" in json.loads(reloaded.stdout)["changed"]
    agent.wait_for(lambda s: entry(s, "lazy")["state"] == "RUNNING", 15, "lazy started by the reload")

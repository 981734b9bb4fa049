"""QgaFrontEnd behaviour over a real unix socket: concurrency, sync, policy, freeze, timeouts."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from concierge.testing.qga_inproc import Agent, start_agent
from concierge.testing.qga_peer import RawClient
from concierge.transport.qga import argspec


def test_ping_answers_while_a_slow_command_is_pending(agent: Agent) -> None:
    with RawClient(agent.socket_path) as client:
        client.send(b'{"execute":"guest-get-disks","id":"slow"}{"execute":"guest-ping","id":"p"}')
        started = time.monotonic()
        assert client.read_line() == b'{"return": {}, "id": "p"}\n'
        assert time.monotonic() - started < 2.0  # the slow command waits for up to 5 s
        client.send(b'{"execute":"guest-info"}')
        assert json.loads(client.read_line())["return"]["supported_commands"]
        agent.fake.release.set()
        assert client.read_line() == b'{"return": [], "id": "slow"}\n'


def test_sync_discards_replies_to_earlier_commands(agent: Agent) -> None:
    with RawClient(agent.socket_path) as client:
        client.send(b'{"execute":"guest-get-disks"}{"execute":"guest-nope"}')
        client.send(b'\xff{"execute":"guest-sync-delimited","arguments":{"id":77}}')
        # the stray-byte error and the unknown-command error were queued behind the slow command
        assert client.read_line() == b'\xff{"return": 77}\n'
        agent.fake.release.set()
        client.send(b'{"execute":"guest-ping"}')
        assert client.read_line() == b'{"return": {}}\n'
        assert client.drain(0.3) == b""
    assert agent.ctx.counters["qga.discarded_by_sync"] == 3  # slow, unknown, stray 0xFF


def test_replies_of_routed_commands_keep_request_order(agent: Agent) -> None:
    with RawClient(agent.socket_path) as client:
        client.send(
            b'{"execute":"guest-get-disks","id":1}{"execute":"guest-get-host-name","id":2}'
            b'{"execute":"guest-nope","id":3}'
        )
        time.sleep(0.2)
        agent.fake.release.set()
        lines = client.read_lines(3)
    assert [json.loads(line)["id"] for line in lines] == [1, 2, 3]
    assert json.loads(lines[1])["return"] == {"host-name": socket.gethostname()}


def test_no_reply_on_successful_shutdown_but_errors_are_reported(agent: Agent) -> None:
    with RawClient(agent.socket_path) as client:
        client.send(b'{"execute":"guest-shutdown","id":1}{"execute":"guest-ping","id":2}')
        assert client.read_line() == b'{"return": {}, "id": 2}\n'
        client.send(b'{"execute":"guest-shutdown","arguments":{"mode":"halt"},"id":3}')
        assert client.read_line() == (
            b'{"id": 3, "error": {"class": "GenericError", "desc": "halt is not possible here"}}\n'
        )
    assert ("lifecycle.shutdown", {}) in agent.fake.calls


def test_capability_errors_become_generic_errors(agent: Agent) -> None:
    with RawClient(agent.socket_path) as client:
        line = client.exchange(b'{"execute":"guest-file-open","arguments":{"path":"/nope/x"}}')[0]
    assert line == b'{"error": {"class": "GenericError", "desc": "failed to open file \'/nope/x\'"}}\n'


def test_a_hung_capability_becomes_a_timeout_error(tmp_path: Path) -> None:
    running = start_agent(tmp_path, slow_s=3.0)
    try:
        with RawClient(running.socket_path) as client:
            line = client.exchange(b'{"execute":"guest-get-fsinfo"}')[0]
            assert line == (
                b'{"error": {"class": "GenericError", "desc": "Command guest-get-fsinfo timed out after 0.5 s"}}\n'
            )
            assert client.exchange(b'{"execute":"guest-ping"}') == [b'{"return": {}}\n']
    finally:
        running.fake.release.set()
        running.ctx.close()


def test_freeze_allow_list_from_events_and_from_freeze_replies(agent: Agent) -> None:
    with RawClient(agent.socket_path) as client:
        client.exchange(b'{"execute":"guest-ping"}')
        agent.ctx.tell("lifecycle.frozen", {}, kind="evt")
        time.sleep(0.1)
        assert client.exchange(b'{"execute":"guest-get-host-name"}')[0] == (
            b'{"error": {"class": "CommandNotFound", "desc": "Command guest-get-host-name has '
            b'been disabled: the agent is in frozen state"}}\n'
        )
        info = json.loads(client.exchange(b'{"execute":"guest-info"}')[0])["return"]
        enabled = {c["name"] for c in info["supported_commands"] if c["enabled"]}
        assert enabled == set(argspec.FREEZE_ALLOWED)
        assert client.exchange(b'{"execute":"guest-fsfreeze-thaw"}') == [b'{"return": 1}\n']
        assert b"host-name" in client.exchange(b'{"execute":"guest-get-host-name"}')[0]
        # a successful freeze through this channel also closes the gate
        assert client.exchange(b'{"execute":"guest-fsfreeze-freeze"}') == [b'{"return": 1}\n']
        assert b"frozen state" in client.exchange(b'{"execute":"guest-get-time"}')[0]
        agent.ctx.tell("lifecycle.thawed", {}, kind="evt")
        time.sleep(0.1)
        assert b'"return"' in client.exchange(b'{"execute":"guest-get-time"}')[0]


def test_a_new_connection_learns_that_filesystems_are_frozen(agent: Agent) -> None:
    agent.fake.freeze_state = "frozen"
    with RawClient(agent.socket_path) as client:
        # the front-end asks lifecycle at connect time; its answer arrives asynchronously
        deadline = time.monotonic() + 10
        while b"frozen state" not in client.exchange(b'{"execute":"guest-get-time"}')[0]:
            assert time.monotonic() < deadline, "the freeze state never arrived"
            time.sleep(0.02)
        status = client.exchange(b'{"execute":"guest-fsfreeze-status"}')
        assert status == [b'{"return": "frozen"}\n']


def test_allow_and_block_lists_have_qemu_ga_semantics(tmp_path: Path) -> None:
    running = start_agent(
        tmp_path,
        qga_settings={
            "allow_rpcs": ["guest-ping", "guest-info", "guest-get-time", "guest-exec", "no-such"],
            "block_rpcs": ["guest-exec"],
        },
    )
    try:
        with RawClient(running.socket_path) as client:
            assert client.exchange(b'{"execute":"guest-get-host-name"}')[0] == (
                b'{"error": {"class": "CommandNotFound", "desc": "Command guest-get-host-name has been disabled"}}\n'
            )
            assert b"has been disabled" in client.exchange(b'{"execute":"guest-exec"}')[0]
            assert b'"return"' in client.exchange(b'{"execute":"guest-get-time"}')[0]
            info = json.loads(client.exchange(b'{"execute":"guest-info"}')[0])["return"]
        enabled = {c["name"] for c in info["supported_commands"] if c["enabled"]}
        assert enabled == {"guest-ping", "guest-info", "guest-get-time"}
    finally:
        running.ctx.close()


def test_guest_info_lists_every_linux_command(agent: Agent) -> None:
    with RawClient(agent.socket_path) as client:
        info = json.loads(client.exchange(b'{"execute":"guest-info"}')[0])["return"]
    rows = {c["name"]: c for c in info["supported_commands"]}
    assert len([n for n in rows if n != "guest-get-devices"]) == 43
    assert not rows["guest-get-devices"]["enabled"]
    silent = {n for n, c in rows.items() if not c["success-response"]}
    assert silent == {
        "guest-shutdown",
        "guest-suspend-disk",
        "guest-suspend-ram",
        "guest-suspend-hybrid",
    }
    assert all(c["enabled"] for n, c in rows.items() if n != "guest-get-devices")


def test_several_clients_are_served_at_once(agent: Agent) -> None:
    with RawClient(agent.socket_path) as first, RawClient(agent.socket_path) as second:
        first.send(b'{"execute":"guest-get-disks","id":"a"}')
        assert second.exchange(b'{"execute":"guest-ping","id":"b"}') == [b'{"return": {}, "id": "b"}\n']
        agent.fake.release.set()
        assert first.read_line() == b'{"return": [], "id": "a"}\n'
    agent.wait_published("host.disconnected")
    assert agent.ctx.published[0] == ("host.connected", {"channel": "qga", "protocol": "qga"})


def test_oversized_message_is_refused_and_the_channel_recovers(tmp_path: Path) -> None:
    running = start_agent(tmp_path, qga_settings={"max_message_bytes": 4096, "max_nesting": 8})
    try:
        with RawClient(running.socket_path) as client:
            client.send(b'{"execute":"guest-ping","id":"' + b"x" * 10000 + b'"}\n')
            first = client.read_line()
            assert first == (b'{"error": {"class": "GenericError", "desc": "JSON token size limit exceeded"}}\n')
            client.resync(9)
            client.send(b"[" * 20)
            assert b"nesting depth limit exceeded" in client.read_line()
            client.resync(10)
            assert client.exchange(b'{"execute":"guest-ping"}') == [b'{"return": {}}\n']
    finally:
        running.ctx.close()


def test_without_routes_only_protocol_commands_are_enabled(tmp_path: Path) -> None:
    sock = tmp_path / "plain.sock"
    running = start_agent(
        tmp_path,
        channels=[{"name": "qga", "protocol": "qga", "method": "unix-listen", "path": str(sock)}],
    )
    running.ctx.close()
    from concierge.testing.pollctx import PollingContext  # noqa: I001
    from concierge.actors.hostlink.node import HostLinkNode
    from concierge.testing.qga_peer import wait_for_socket
    from concierge.transport.qga.commands import all_routes

    ctx = PollingContext(
        "transport",
        {"channels": [{"name": "qga", "protocol": "qga", "method": "unix-listen", "path": str(sock)}]},
    )
    ctx.run_node(HostLinkNode)
    try:
        wait_for_socket(sock)
        with RawClient(sock) as client:
            info = json.loads(client.exchange(b'{"execute":"guest-info"}')[0])["return"]
            line = client.exchange(b'{"execute":"guest-get-osinfo"}')[0]
        enabled = {c["name"] for c in info["supported_commands"] if c["enabled"]}
        assert enabled == argspec.PROTOCOL_COMMANDS | set(all_routes())
        if "guest-get-osinfo" not in all_routes():
            assert line == (
                b'{"error": {"class": "CommandNotFound", "desc": "Command guest-get-osinfo has been disabled"}}\n'
            )
    finally:
        ctx.close()

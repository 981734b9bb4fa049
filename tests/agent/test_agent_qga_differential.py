"""The whole agent (supervisor + transport + capability actors in their own processes) against
the real qemu-ga on the same machine: the same bytes in, the same answers out.

Byte-for-byte for protocol behaviour, field-for-field where the values are deterministic on one
machine, shape-for-shape (validated against the QAPI schema) for the rest. Commands that would
change the machine (shutdown, suspend, set-time, set-vcpus, freeze of real filesystems) are only
sent with invalid arguments, or on a loop filesystem the test created.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from concierge.testing.harness import AgentHarness, catalog
from concierge.testing.loopfs import loop_fs
from concierge.testing.peers import require
from concierge.testing.qapi import check_value, load_schema
from concierge.testing.qga_peer import QemuGa, RawClient, find_qemu_ga, wait_for_socket
from concierge.testing.reference import reference_file


class Pair:
    """One raw client on each agent."""

    def __init__(self, ours: RawClient, stock: RawClient) -> None:
        self.ours = ours
        self.stock = stock

    def both(self, request: dict[str, Any] | bytes) -> tuple[dict[str, Any], dict[str, Any]]:
        data = request if isinstance(request, bytes) else json.dumps(request).encode()
        a = self.ours.exchange(data)[0]
        b = self.stock.exchange(data)[0]
        return json.loads(a), json.loads(b)

    def raw(self, data: bytes, count: int = 1) -> tuple[list[bytes], list[bytes]]:
        return self.ours.exchange(data, count), self.stock.exchange(data, count)


@pytest.fixture(scope="module")
def loop_mount() -> Iterator[Path]:
    with loop_fs("ext4") as mnt:
        yield mnt


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, loop_mount: Path) -> Iterator[Pair]:
    require(find_qemu_ga() is not None, "qemu-ga not found (apt install qemu-guest-agent)")
    root = tmp_path_factory.mktemp("agent")
    sock = root / "qga.sock"
    state = root / "state"
    actors = {
        "transport": {"entry": "concierge.actors.hostlink.node:HostLinkNode", "essential": True},
        "lifecycle": {
            "entry": "concierge.actors.lifecycle.node:LifecycleNode",
            "settings": {
                "only_mountpoints": [str(loop_mount)],
                "state_dir": str(state / "lifecycle"),
                "fsfreeze_hook": "",
            },
        },
        "monitor": {"entry": "concierge.actors.monitor.node:MonitorNode"},
        "guestops": {
            "entry": "concierge.actors.guestops.node:GuestOpsNode",
            "settings": {"state_dir": str(state / "guestops")},
        },
    }
    agent = AgentHarness(root, catalog(actors), args=("--log-format", "text", "--channel", f"qga=unix-listen:{sock}"))
    agent.start()
    try:
        wait_for_socket(sock)
        with (
            QemuGa() as stock,
            RawClient(sock, timeout_s=30) as ours,
            RawClient(stock.socket_path, timeout_s=30) as theirs,
        ):
            ours.resync()
            theirs.resync()
            yield Pair(ours, theirs)
    finally:
        agent.stop()


@pytest.fixture(scope="module")
def schema() -> dict[str, dict[str, Any]]:
    return load_schema(reference_file("qga-qapi-schema.json"))


PROTOCOL_CASES = [
    b'{"execute":"guest-ping"}',
    b'{"execute":"guest-ping","id":{"a":[1,null,true]}}',
    b'{"execute":"guest-sync","arguments":{"id":77}}',
    b'{"execute":"guest-sync"}',
    b'{"execute":"guest-nope","id":3}',
    b'{"execute":"guest-get-osinfo","arguments":{"x":1}}',
    b'{"execute":"guest-file-open"}',
    b'{"execute":"guest-file-read","arguments":{"handle":"x"}}',
    b'{"execute":"guest-shutdown","arguments":{"mode":"sideways"}}',
    b'{"execute":"guest-set-time","arguments":{"time":"soon"}}',
    b'{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":0}]}}',
    b'{"execute":"guest-exec","arguments":{}}',
    b'{"execute":"guest-ssh-get-authorized-keys","arguments":{"username":"qga-no-such-user"}}',
    b'{"execute":"guest-file-close","arguments":{"handle":999999}}',
    b'{"execute":"guest-exec-status","arguments":{"pid":1}}',
    b"[1,2]",
    b'{"execute":1}',
]


@pytest.mark.parametrize("payload", PROTOCOL_CASES, ids=lambda p: p.decode()[:60])
def test_protocol_and_error_bytes_match(pair: Pair, payload: bytes) -> None:
    ours, stock = pair.raw(payload)
    assert ours == stock


def test_sync_delimited_and_flush_byte(pair: Pair) -> None:
    payload = b'\xff{"execute":"guest-sync-delimited","arguments":{"id":5}}'
    ours, stock = pair.raw(payload, count=2)
    assert ours == stock


DETERMINISTIC = [
    "guest-get-host-name",
    "guest-get-osinfo",
    "guest-get-timezone",
    "guest-get-memory-block-info",
    "guest-fsfreeze-status",
]


@pytest.mark.parametrize("command", DETERMINISTIC)
def test_deterministic_inventory_is_identical(pair: Pair, command: str) -> None:
    ours, stock = pair.both({"execute": command})
    assert ours == stock


def test_vcpus_users_and_disks_match(pair: Pair) -> None:
    for command in ("guest-get-vcpus", "guest-get-users", "guest-get-disks"):
        ours, stock = pair.both({"execute": command})
        key = "logical-id" if command == "guest-get-vcpus" else "user" if command == "guest-get-users" else "name"
        assert sorted(json.dumps(x, sort_keys=True) for x in ours["return"]) == sorted(
            json.dumps(x, sort_keys=True) for x in stock["return"]
        ) or {x[key] for x in ours["return"]} >= {x[key] for x in stock["return"]}, command


def test_interfaces_and_addresses_match(pair: Pair) -> None:
    ours, stock = pair.both({"execute": "guest-network-get-interfaces"})

    def view(reply: dict[str, Any]) -> dict[str, Any]:
        return {
            i["name"]: (
                i.get("hardware-address"),
                sorted(json.dumps(a, sort_keys=True) for a in i.get("ip-addresses", [])),
            )
            for i in reply["return"]
        }

    assert view(ours) == view(stock)


def test_filesystems_match(pair: Pair, loop_mount: Path) -> None:
    ours, stock = pair.both({"execute": "guest-get-fsinfo"})

    def view(reply: dict[str, Any]) -> set[tuple[str, str, str]]:
        return {(f["mountpoint"], f["type"], f["name"]) for f in reply["return"]}

    assert view(ours) == view(stock)
    assert str(loop_mount) in {f["mountpoint"] for f in ours["return"]}


@pytest.mark.parametrize(
    "command",
    ["guest-get-time", "guest-get-cpustats", "guest-get-diskstats", "guest-get-memory-blocks", "guest-info"],
)
def test_shapes_conform_to_schema(pair: Pair, schema: dict[str, dict[str, Any]], command: str) -> None:
    ours, stock = pair.both({"execute": command})
    assert "return" in ours and "return" in stock
    returns = schema[command].get("returns")
    if returns is not None:
        assert check_value(schema, returns, ours["return"]) == []
    assert type(ours["return"]) is type(stock["return"])


def test_freeze_list_and_thaw_on_a_loop_fs(pair: Pair, loop_mount: Path) -> None:
    freeze = json.dumps({"execute": "guest-fsfreeze-freeze-list", "arguments": {"mountpoints": [str(loop_mount)]}})
    steps = [freeze.encode(), b'{"execute":"guest-fsfreeze-status"}', b'{"execute":"guest-get-host-name"}']
    transcripts = []
    for client in (pair.ours, pair.stock):  # one after the other: both cannot freeze one fs at once
        try:
            transcripts.append([client.exchange(step)[0] for step in steps])
        finally:
            transcripts[-1:] = (
                [[*transcripts[-1], client.exchange(b'{"execute":"guest-fsfreeze-thaw"}')[0]]] if transcripts else []
            )
    ours, stock = transcripts
    assert ours == stock
    assert ours[0] == b'{"return": 1}\n' and ours[1] == b'{"return": "frozen"}\n'
    assert b"frozen state" in ours[2], "only the freeze-time commands are accepted while frozen"
    assert ours[3] == b'{"return": 1}\n'


def test_file_round_trip_matches(pair: Pair, tmp_path: Path) -> None:
    results = []
    for client in (pair.ours, pair.stock):
        path = tmp_path / f"f-{len(results)}"
        handle = json.loads(
            client.exchange(
                json.dumps({"execute": "guest-file-open", "arguments": {"path": str(path), "mode": "w+"}}).encode()
            )[0]
        )["return"]
        steps = [
            {
                "execute": "guest-file-write",
                "arguments": {"handle": handle, "buf-b64": base64.b64encode(b"hello qga\nline2\n").decode()},
            },
            {"execute": "guest-file-seek", "arguments": {"handle": handle, "offset": 0, "whence": "set"}},
            {"execute": "guest-file-read", "arguments": {"handle": handle, "count": 6}},
            {"execute": "guest-file-seek", "arguments": {"handle": handle, "offset": -2, "whence": 2}},
            {"execute": "guest-file-read", "arguments": {"handle": handle}},
            {"execute": "guest-file-flush", "arguments": {"handle": handle}},
            {"execute": "guest-file-close", "arguments": {"handle": handle}},
            {"execute": "guest-file-close", "arguments": {"handle": handle}},
        ]
        replies = [json.loads(client.exchange(json.dumps(s).encode())[0]) for s in steps]
        replies[-1]["error"]["desc"] = replies[-1]["error"]["desc"].replace(str(handle), "H")
        results.append(replies)
    assert results[0] == results[1]


def test_exec_status_matches(pair: Pair) -> None:
    outcomes = []
    for client in (pair.ours, pair.stock):
        request = {
            "execute": "guest-exec",
            "arguments": {
                "path": "/bin/sh",
                "arg": ["-c", "cat; echo err >&2; exit 3"],
                "input-data": base64.b64encode(b"from stdin\n").decode(),
                "capture-output": True,
            },
        }
        pid = json.loads(client.exchange(json.dumps(request).encode())[0])["return"]["pid"]
        deadline = time.monotonic() + 20
        while True:
            status = json.loads(
                client.exchange(json.dumps({"execute": "guest-exec-status", "arguments": {"pid": pid}}).encode())[0]
            )["return"]
            if status["exited"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        again = json.loads(
            client.exchange(json.dumps({"execute": "guest-exec-status", "arguments": {"pid": pid}}).encode())[0]
        )
        outcomes.append((status, again["error"]["class"]))
    assert outcomes[0] == outcomes[1]


def test_qemu_qmp_library_as_client(pair: Pair) -> None:
    from qemu.qmp.legacy import QEMUMonitorProtocol

    path = pair.ours.path
    client = QEMUMonitorProtocol(str(path))
    client.connect(negotiate=False)
    client.settimeout(10)
    try:
        assert client.cmd("guest-sync", id=4242) == 4242
        assert client.cmd("guest-ping") == {}
        assert "name" in client.cmd("guest-get-osinfo")
    finally:
        client.close()

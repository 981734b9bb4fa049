"""Differential tests: the monitor's QGA renderings against the real qemu-ga on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from monitor_peers import monitor_node, qemu_ga

from concierge.actors.utmp import USER_PROCESS, pack_utmp
from concierge.transport.qga.commands.monitor import ROUTES

pytestmark = pytest.mark.peer

_ROUTES = {route.command: route for route in ROUTES}


def ours(ctx: Any, command: str) -> Any:
    """Run ``command`` through its route: to_request, the node, render."""
    route = _ROUTES[command]
    reply = ctx.ask(route.request, route.to_request({}))
    assert reply.ok, reply
    return json.loads(json.dumps(route.render(reply.body)))


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("qga")
    with qemu_ga(tmp) as qga, monitor_node() as ctx:
        yield qga, ctx


@pytest.mark.parametrize(
    "command", ["guest-get-osinfo", "guest-get-host-name", "guest-get-timezone", "guest-get-disks"]
)
def test_deterministic_answers_are_byte_identical(both: Any, command: str) -> None:
    qga, ctx = both
    assert json.dumps(ours(ctx, command)) == qga.return_text(command)


def test_interfaces_match_field_for_field(both: Any) -> None:
    qga, ctx = both
    theirs = qga.call("guest-network-get-interfaces")
    mine = ours(ctx, "guest-network-get-interfaces")
    assert [i["name"] for i in mine] == [i["name"] for i in theirs]
    for a, b in zip(mine, theirs, strict=True):
        assert list(a) == list(b), a["name"]  # same keys, same order
        assert a.get("hardware-address") == b.get("hardware-address")
        assert a.get("ip-addresses") == b.get("ip-addresses")
        if "statistics" in b:
            assert list(a["statistics"]) == list(b["statistics"])
            for key, value in b["statistics"].items():  # counters only grow
                assert a["statistics"][key] >= value, key


def test_fsinfo_matches_except_live_sizes(both: Any) -> None:
    qga, ctx = both
    theirs = qga.call("guest-get-fsinfo")
    mine = ours(ctx, "guest-get-fsinfo")
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs, strict=True):
        a.pop("total-bytes-privileged", None)  # since qemu 9.1; 7.2 lacks it
        assert list(a) == list(b)
        assert {k: v for k, v in a.items() if k != "used-bytes"} == {k: v for k, v in b.items() if k != "used-bytes"}
        assert abs(a["used-bytes"] - b["used-bytes"]) < 512 * 1024 * 1024


def test_diskstats_and_cpustats_match_shape_and_grow(both: Any) -> None:
    qga, ctx = both
    for command in ("guest-get-diskstats", "guest-get-cpustats"):
        theirs = qga.call(command)
        mine = ours(ctx, command)
        assert len(mine) == len(theirs), command
        for a, b in zip(mine, theirs, strict=True):
            assert list(a) == list(b), command
            inner_a = a.get("stats", a)
            inner_b = b.get("stats", b)
            assert list(inner_a) == list(inner_b)
            for key, value in inner_b.items():
                if isinstance(value, int) and key not in ("ios-pgr", "cpu", "major", "minor"):
                    assert inner_a[key] >= value, (command, key)


def test_users_match_qemu_ga_on_a_synthetic_utmp(tmp_path: Path) -> None:
    records = b"".join(
        [
            pack_utmp("alice", 1_795_649_826, 123_456),
            pack_utmp("bob", 1_795_653_416, 500_000),
            pack_utmp("alice", 1_795_640_000, 250_000),  # earlier login wins
            pack_utmp("LOGIN", 1_795_640_001, ut_type=6),  # not a USER_PROCESS
            pack_utmp("carol", 1_795_653_999, 1, line="tty1"),
        ]
    )
    assert USER_PROCESS == 7
    with qemu_ga(tmp_path, utmp=records) as qga:
        theirs = qga.return_text("guest-get-users")
    (tmp_path / "mine.utmp").write_bytes(records)
    with monitor_node({"utmp_path": str(tmp_path / "mine.utmp"), "logind_bus": "none"}) as ctx:
        mine = ours(ctx, "guest-get-users")
    assert json.dumps(mine) == theirs
    assert [u["user"] for u in mine] == ["alice", "bob", "carol"]


def test_no_utmp_gives_the_same_empty_list(both: Any, tmp_path: Path) -> None:
    qga, _ = both
    with monitor_node({"utmp_path": str(tmp_path / "absent"), "logind_bus": "none"}) as ctx:
        assert ours(ctx, "guest-get-users") == []
    if not Path("/var/run/utmp").exists():
        assert qga.call("guest-get-users") == []

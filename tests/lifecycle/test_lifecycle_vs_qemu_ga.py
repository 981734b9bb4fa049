"""Same requests to the stock qemu-ga and to the lifecycle actor: same answers and error texts.

Only safe commands: freeze-list of a loop fs this test created, read-only sysfs queries, and
invalid arguments that are refused before anything is changed. Never freeze /, never shut
down, never set the clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lifecycle_support import QgaClient, loop_fs, not_frozen, real_qemu_ga

from concierge.testing.context import FakeContext
from concierge.transport.qga.commands import all_routes

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def mnt() -> Iterator[Path]:
    with loop_fs("ext4") as path:
        yield path


@pytest.fixture
def qga() -> Iterator[QgaClient]:
    with real_qemu_ga() as client:
        yield client


@pytest.fixture
def ours(mnt: Path, tmp_path: Path) -> Iterator[Any]:
    from concierge.actors.lifecycle.node import LifecycleNode

    ctx = FakeContext(
        "lifecycle", {"only_mountpoints": [str(mnt)], "fsfreeze_hook": "", "state_dir": str(tmp_path / "state")}
    )
    ctx.run_node(LifecycleNode)
    routes = all_routes()

    def cmd(execute: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        route = routes[execute]
        reply = ctx.ask(route.request, route.to_request(arguments or {}))
        if reply.ok:
            return {"return": route.render(reply.body)}
        return {"error": {"class": "GenericError", "desc": reply.message}}

    yield cmd
    ctx.close()


def test_freeze_list_and_thaw_match(qga: QgaClient, ours: Any, mnt: Path) -> None:
    script: list[tuple[str, dict[str, Any] | None]] = [
        ("guest-fsfreeze-freeze-list", {"mountpoints": [str(mnt), "/no/such"]}),
        ("guest-fsfreeze-status", None),
        ("guest-fsfreeze-thaw", None),
        ("guest-fsfreeze-status", None),
        ("guest-fsfreeze-freeze-list", {"mountpoints": ["/no/such"]}),
        ("guest-fsfreeze-status", None),
    ]
    theirs = [qga.cmd(c, a) for c, a in script]
    assert not_frozen(mnt)
    mine = [ours(c, a) for c, a in script]
    assert not_frozen(mnt)
    assert mine == theirs
    assert theirs[0] == {"return": 1}


INVALID: list[tuple[str, dict[str, Any]]] = [
    ("guest-shutdown", {"mode": "explode"}),
    ("guest-set-time", {"time": 4102444800 * 10**9 + 1}),
    ("guest-set-time", {"time": 2**63 - 1}),
    ("guest-set-vcpus", {"vcpus": [{"logical-id": 99999, "online": True}]}),
    ("guest-set-vcpus", {"vcpus": []}),
    ("guest-set-memory-blocks", {"mem-blks": [{"phys-index": 999999, "online": True}]}),
]


@pytest.mark.parametrize(("command", "arguments"), INVALID)
def test_invalid_arguments_match(qga: QgaClient, ours: Any, command: str, arguments: dict[str, Any]) -> None:
    assert ours(command, arguments) == qga.cmd(command, arguments)


def test_read_only_queries_match(qga: QgaClient, ours: Any) -> None:
    def key(item: dict[str, Any]) -> int:
        return int(item.get("logical-id", item.get("phys-index", 0)))

    for command in ("guest-get-vcpus", "guest-get-memory-blocks"):
        theirs, mine = qga.cmd(command), ours(command)
        assert sorted(mine["return"], key=key) == sorted(theirs["return"], key=key)
    assert ours("guest-get-memory-block-info") == qga.cmd("guest-get-memory-block-info")


def test_vcpus_and_memory_blocks_in_qemu_gas_order(qga: QgaClient, ours: Any) -> None:
    """qemu-ga lists them in sysfs readdir order (cpu1 before cpu0 on a 2-vCPU machine), not
    sorted; a client that zips them with its own list must see the same order (issue 15 item 9)."""
    for command in ("guest-get-vcpus", "guest-get-memory-blocks"):
        assert ours(command) == qga.cmd(command), command

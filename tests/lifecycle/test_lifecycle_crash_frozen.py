"""A lifecycle actor SIGKILLed while a real loop filesystem is frozen (issue 15 item 3): the
supervisor held every restart, lifecycle's included, until the freeze deadline, so the guest
stayed frozen for the whole lease (60 s) and a host's thaw waited as long. The whole agent runs
here (supervisor, transport, lifecycle in their own processes) behind a real QGA socket."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lifecycle_support import can_loop_mount, loop_fs, not_frozen, start_writer, writer_blocked, writer_finishes

from concierge.testing.harness import AgentHarness, catalog
from concierge.testing.peers import require
from concierge.testing.qga_peer import RawClient, wait_for_socket

pytestmark = pytest.mark.peer

LEASE_S = 60.0


@pytest.fixture
def frozen_agent(tmp_path: Path) -> Iterator[tuple[AgentHarness, RawClient, Path]]:
    require(os.geteuid() == 0 and can_loop_mount(), "needs root and loop devices")
    with loop_fs("ext4") as mnt:
        sock = tmp_path / "qga.sock"
        actors = {
            "transport": {"entry": "concierge.actors.hostlink.node:HostLinkNode", "essential": True},
            "lifecycle": {
                "entry": "concierge.actors.lifecycle.node:LifecycleNode",
                "settings": {
                    "only_mountpoints": [str(mnt)],
                    "state_dir": str(tmp_path / "state"),
                    "fsfreeze_hook": "",
                    "freeze_lease_s": LEASE_S,
                },
            },
        }
        agent = AgentHarness(
            tmp_path, catalog(actors), args=("--log-format", "text", "--channel", f"qga=unix-listen:{sock}")
        )
        agent.start()
        try:
            wait_for_socket(sock)
            with RawClient(sock, timeout_s=LEASE_S + 30) as client:
                client.resync()
                freeze = {"execute": "guest-fsfreeze-freeze-list", "arguments": {"mountpoints": [str(mnt)]}}
                assert json.loads(client.exchange(json.dumps(freeze).encode())[0]) == {"return": 1}
                assert writer_blocked(start_writer(mnt))
                yield agent, client, mnt
        finally:
            agent.stop()


def test_killed_lifecycle_thaws_at_once(frozen_agent: tuple[AgentHarness, RawClient, Path]) -> None:
    agent, _client, mnt = frozen_agent
    os.kill(agent.actor("lifecycle")["pid"], signal.SIGKILL)
    # the bound is generous against the scheduler, and a sixth of the lease this guards against
    assert writer_finishes(start_writer(mnt, "after"), timeout_s=10.0), agent.log_tail()
    status = agent.wait_for(lambda s: not s["frozen"], 10.0, "supervisor sees the thaw")
    assert status["frozen"] is False


def test_thaw_sent_while_lifecycle_is_down_is_answered(frozen_agent: tuple[AgentHarness, RawClient, Path]) -> None:
    agent, client, mnt = frozen_agent
    os.kill(agent.actor("lifecycle")["pid"], signal.SIGKILL)
    sent = time.monotonic()
    reply = json.loads(client.exchange(b'{"execute":"guest-fsfreeze-thaw"}')[0])
    answered = time.monotonic() - sent
    assert reply == {"return": 1}, reply  # the filesystem the host froze, thawed by the restart
    assert answered < 10.0, answered
    assert not_frozen(mnt, "after")
    assert json.loads(client.exchange(b'{"execute":"guest-fsfreeze-status"}')[0]) == {"return": "thawed"}

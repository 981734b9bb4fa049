"""Answers pushed on change (issue 16): guest-get-osinfo answered by the transport itself from
the monitor's last push, and still right after the OS release changes on disk and after the
monitor crashes. The whole agent in real processes, a raw QGA client on a unix socket."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from concierge.testing.harness import AgentHarness, catalog
from concierge.testing.qga_peer import RawClient, wait_for_socket


def _osinfo(client: RawClient) -> dict[str, Any]:
    reply = json.loads(client.exchange(b'{"execute":"guest-get-osinfo"}')[0])
    return reply["return"]  # type: ignore[no-any-return]


def _eventually(client: RawClient, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    info = _osinfo(client)
    while not wanted(info) and time.monotonic() < deadline:
        time.sleep(0.05)
        info = _osinfo(client)
    return info


def _transport_counter(agent: AgentHarness, name: str) -> int:
    metrics = json.loads(agent.cli("--json", "metrics").stdout)
    counters = next(a["counters"] for a in metrics["actors"] if a["id"] == "transport")
    return int(counters.get(name, 0))


def test_osinfo_is_answered_inline_and_follows_changes_and_crashes(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    release = etc / "os-release"
    release.write_text('ID=first\nPRETTY_NAME="First"\n')
    sock = tmp_path / "qga.sock"
    actors = {
        "transport": {"entry": "concierge.actors.hostlink.node:HostLinkNode", "essential": True},
        "monitor": {
            "entry": "concierge.actors.monitor.node:MonitorNode",
            "settings": {"os_release_paths": [str(release)]},
        },
    }
    (tmp_path / "agent").mkdir()
    agent = AgentHarness(
        tmp_path / "agent", catalog(actors), args=("--log-format", "text", "--channel", f"qga=unix-listen:{sock}")
    )
    agent.start()
    try:
        wait_for_socket(sock)
        with RawClient(sock, timeout_s=30) as client:
            client.resync()
            assert _osinfo(client)["id"] == "first"
            assert _eventually(client, lambda _: True)["kernel-release"] == os.uname().release
            for _ in range(50):
                assert _osinfo(client)["pretty-name"] == "First"
            deadline = time.monotonic() + 10
            while _transport_counter(agent, "qga.pushed") < 50 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _transport_counter(agent, "qga.pushed") >= 50  # answered by the transport

            # an upgrade replaces the file by rename: the next answers carry the new release
            staged = etc / ".os-release.new"
            staged.write_text('ID=second\nPRETTY_NAME="Second"\nVERSION_ID=2\n')
            staged.rename(release)
            changed = _eventually(client, lambda info: info.get("id") == "second")
            assert (changed["id"], changed["version-id"]) == ("second", "2")

            # the monitor crashes; while it is gone the file changes again: never a stale answer
            # once it is back
            pid = agent.actor("monitor")["pid"]
            os.kill(pid, signal.SIGKILL)
            release.write_text('ID=third\nPRETTY_NAME="Third"\n')
            agent.wait_for(
                lambda s: any(
                    x["id"] == "monitor" and x["state"] == "RUNNING" and x["pid"] != pid for x in s["actors"]
                ),
                10,
                "monitor restarted",
            )
            assert _eventually(client, lambda info: info.get("id") == "third")["pretty-name"] == "Third"
    finally:
        agent.stop()

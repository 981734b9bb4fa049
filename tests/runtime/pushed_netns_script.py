"""Runs inside a private network namespace (``unshare -n``) for the pushed-answers test: the
whole agent serves guest-network-get-interfaces while an address comes and goes on the
namespace's own lo, invisible to the rest of the machine.

Usage: ``python pushed_netns_script.py WORKDIR`` -> one JSON object on stdout. Never run it
outside a private network namespace (it adds and removes an address).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from concierge.testing.harness import AgentHarness, catalog
from concierge.testing.qga_peer import RawClient, wait_for_socket

ADDRESS = "10.77.0.1"


def interfaces(client: RawClient) -> list[dict[str, Any]]:
    reply = json.loads(client.exchange(b'{"execute":"guest-network-get-interfaces"}')[0])
    return reply["return"]  # type: ignore[no-any-return]


def addresses(seen: list[dict[str, Any]]) -> list[str]:
    """Every IP address listed, in order."""
    return [a["ip-address"] for i in seen for a in i.get("ip-addresses", [])]


def until(client: RawClient, wanted: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    seen = interfaces(client)
    while not wanted(seen) and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = interfaces(client)
    return seen


def pushed_count(agent: AgentHarness, wanted: int) -> int:
    """The transport's ``qga.pushed`` once it reaches ``wanted`` (counters come with heartbeats)."""
    deadline = time.monotonic() + 10
    while True:
        metrics = json.loads(agent.cli("--json", "metrics").stdout)
        counters = next(a["counters"] for a in metrics["actors"] if a["id"] == "transport")
        count = int(counters.get("qga.pushed", 0))
        if count >= wanted or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


def main(work: Path) -> dict[str, Any]:
    sock = work / "qga.sock"
    actors = {
        "transport": {"entry": "concierge.actors.hostlink.node:HostLinkNode", "essential": True},
        "monitor": {"entry": "concierge.actors.monitor.node:MonitorNode"},
    }
    (work / "agent").mkdir()
    agent = AgentHarness(
        work / "agent", catalog(actors), args=("--log-format", "text", "--channel", f"qga=unix-listen:{sock}")
    )
    agent.start()
    result: dict[str, Any] = {}
    try:
        wait_for_socket(sock)
        with RawClient(sock, timeout_s=30) as client:
            client.resync()
            for _ in range(20):
                result["before"] = [i["name"] for i in interfaces(client)]
            # no dummy or veth links in every sandbox: an address on lo is a layout change too
            subprocess.run(["ip", "addr", "add", f"{ADDRESS}/24", "dev", "lo"], check=True)
            added = until(client, lambda seen: ADDRESS in addresses(seen))
            result["added"] = addresses(added)
            result["statistics"] = sorted(added[0].get("statistics", {}))  # listed with an address
            subprocess.run(["ip", "addr", "del", f"{ADDRESS}/24", "dev", "lo"], check=True)
            result["removed"] = addresses(until(client, lambda seen: ADDRESS not in addresses(seen)))
        result["pushed"] = pushed_count(agent, 19)
    finally:
        agent.stop()
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))

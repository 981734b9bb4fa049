"""API version negotiation: every value vdsm may send is clamped to 0..3 and gates the reports.

The host side is the vdsm-faithful :class:`VdsmHost` over a real pty. The agent's heartbeat
always advertises its own maximum (as OGA's does); what vdsm's ``api-version`` changes is the
negotiated version, which gates the reports and, when it changes, triggers a full refresh. Each
case lowers the agent to 0, sends the value under test and checks the refresh carries exactly
the reports the clamped version allows (number-of-cpus from 1, os-info and timezone from 2,
containers from 3); then it sends the clamped value itself, which must change nothing (an
unclamped 7 stored as 7 would make that 3 a change and re-send everything).
"""

from __future__ import annotations

import os
import pty
import time
import tty
from collections.abc import Callable
from typing import Any

import pytest
from ovirt_harness import FakePeers, HostPump, start_frontend

GATED = {"number-of-cpus": 1, "os-info": 2, "timezone": 2, "containers": 3}
ALWAYS = ("host-name", "os-version", "network-interfaces", "applications")
QUIET_S = 1.0  # five heartbeat periods: a refresh would have shown up by then


def _mark(pump: HostPump) -> int:
    with pump.lock:
        return len(pump.host.received)


def _names_since(pump: HostPump, mark: int) -> set[str]:
    with pump.lock:
        return {name for name, _ in pump.host.received[mark:]}


def _refresh_after(pump: HostPump, mark: int) -> set[str]:
    pump.wait(lambda h: all(n in {m for m, _ in h.received[mark:]} for n in ALWAYS))
    time.sleep(0.5)  # the gated reports are answered by the same fake peers, as fast
    return _names_since(pump, mark)


@pytest.mark.parametrize(
    ("sent", "expected"),
    [(0, 0), (1, 1), (2, 2), (3, 3), (4, 3), (99, 3), (-1, 0), ("2", 2), ("three", 0), (None, 0)],
    ids=["v0", "v1", "v2", "v3", "v4", "v99", "negative", "numeric-string", "junk", "null"],
)
def test_api_version_is_clamped_and_gates_reports(
    sent: Any, expected: int, peers: FakePeers, closers: list[Callable[[], object]]
) -> None:
    host_fd, guest_fd = pty.openpty()
    tty.setraw(host_fd)
    tty.setraw(guest_fd)
    closers.append(lambda: (os.close(host_fd), os.close(guest_fd)))
    pump = HostPump(host_fd)
    closers.append(pump.close)
    ctx = start_frontend(peers, fd=guest_fd, stale_window_s=0.0)
    closers.append(ctx.close)
    pump.wait(lambda h: h.effective_api_version == 3 and bool(h.state.guest_os_info))
    mark = _mark(pump)
    pump.send("api-version", apiVersion=0)  # 3 -> 0: a refresh without any gated report
    assert not _refresh_after(pump, mark) & set(GATED)

    mark = _mark(pump)
    pump.send("api-version", apiVersion=sent)
    if expected == 0:
        time.sleep(QUIET_S)
        assert not _names_since(pump, mark) & {*ALWAYS, *GATED}, "0 -> 0 is no change"
    else:
        names = _refresh_after(pump, mark)
        for report, minimum in GATED.items():
            assert (report in names) == (expected >= minimum), (report, sorted(names))

    mark = _mark(pump)
    pump.send("api-version", apiVersion=expected)  # the value it must already hold
    time.sleep(QUIET_S)
    assert not _names_since(pump, mark) & {*ALWAYS, *GATED}, f"{sent!r} was not stored as {expected}"
    assert pump.host.errors == []

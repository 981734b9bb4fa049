"""Hostile lines from vdsm's side cost themselves, never the channel (codec and front-end)."""

from __future__ import annotations

import os
import pty
import tty
from collections.abc import Callable

import pytest
from ovirt_harness import FakePeers, HostPump, start_frontend

from concierge.transport.ovirt.codec import MAX_DEPTH, Garbage, Message, decode_line, scrub


def _nested(depth: int) -> bytes:
    return b'{"__name__": "echo", "v": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 499, 5_000, 100_000])
def test_deep_lines_are_garbage_not_exceptions(depth: int) -> None:
    item = decode_line(_nested(depth))
    assert isinstance(item, Garbage)
    assert item.reason == "JSON nested too deeply"


def test_unbalanced_bracket_flood_and_huge_integer_are_garbage() -> None:
    assert isinstance(decode_line(b"[" * 100_000), Garbage)
    assert isinstance(decode_line(b'{"__name__": "echo", "n": ' + b"1" * 5_000 + b"}"), Garbage)


def test_the_deepest_accepted_value_still_decodes() -> None:
    item = decode_line(_nested(MAX_DEPTH - 1))
    assert isinstance(item, Message)
    assert scrub(item.args) == item.args


def test_front_end_keeps_serving_after_hostile_lines(peers: FakePeers, closers: list[Callable[[], object]]) -> None:
    host_fd, guest_fd = pty.openpty()
    tty.setraw(host_fd)
    tty.setraw(guest_fd)
    closers.append(lambda: (os.close(host_fd), os.close(guest_fd)))
    pump = HostPump(host_fd)
    closers.append(pump.close)
    ctx = start_frontend(peers, fd=guest_fd, stale_window_s=0.0)
    closers.append(ctx.close)
    pump.wait(lambda h: bool(h.state.guest_name))
    os.write(host_fd, _nested(499) + b"\n" + _nested(20_000) + b"\n")
    # numbers no int() can take: infinity (1e999), NaN is not JSON, lists
    os.write(host_fd, b'{"__name__": "api-version", "apiVersion": 1e999}\n')
    os.write(host_fd, b'{"__name__": "set-number-of-cpus", "count": -1e999}\n')
    os.write(host_fd, b'{"__name__": "shutdown", "timeout": 1e999, "reboot": [1]}\n')
    os.write(host_fd, b'{"__name__": "set-number-of-cpus", "count": ' + b"9" * 4000 + b"}\n")
    pump.send("echo", n=1)
    pump.wait(lambda h: any(n == "echo" for n, _ in h.received))
    assert ctx.counters["ovirt.garbage"] == 2
    assert ctx.counters.get("ovirt.handler_errors", 0) == 0
    assert peers.of("lifecycle", "lifecycle.shutdown") == [
        {"mode": "poweroff", "delay_s": 0, "message": "System going down"}
    ]
    assert peers.of("lifecycle", "lifecycle.set_cpus") == [{"count": (1 << 31) - 1}]

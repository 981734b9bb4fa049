"""Fixtures for the QGA tests: the real qemu-ga, and our transport node behind a real socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from concierge.testing.peers import require_binary
from concierge.testing.qga_inproc import Agent, start_agent
from concierge.testing.qga_peer import QemuGa


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    """Our front-end behind a real unix-listen socket."""
    running = start_agent(tmp_path)
    yield running
    running.fake.release.set()
    running.ctx.close()


@pytest.fixture(scope="module")
def qemu_ga() -> Iterator[QemuGa]:
    """The stock qemu-ga on a unix socket (skips on a laptop, fails in CI when absent)."""
    binary = require_binary("qemu-ga", "qemu-guest-agent")
    with QemuGa(binary) as ga:
        yield ga

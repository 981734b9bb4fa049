"""Shared fixtures: a factory for real supervisor processes in temporary runtime dirs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from concierge.testing.harness import AgentHarness, catalog


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[Any]:
    """Build AgentHarness instances; every one is stopped at the end of the test."""
    made: list[AgentHarness] = []

    def make(
        actors: dict[str, dict[str, Any]],
        *,
        extra: str = "",
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        name: str = "a",
    ) -> AgentHarness:
        root = tmp_path / name
        root.mkdir(exist_ok=True)
        harness = AgentHarness(root, catalog(actors, extra=extra), args=("--log-format", "text", *args), env=env)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.stop()

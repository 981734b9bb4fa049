"""Locate the team's shared reference data (QAPI schemas ...) beside the repository, or skip.

Under ``CONCIERGE_REQUIRE_PEERS=1`` (CI) a missing shared tree fails instead: the conformance
tests must never pass by not running.

The data lives in ``../shared/reference`` next to the checkout (CI lays it there too);
``CONCIERGE_SHARED`` overrides the location.
"""

from __future__ import annotations

from pathlib import Path

from concierge.testing.peers import require
from concierge.testing.qapi import find_reference


def reference_file(name: str) -> Path:
    """Path of ``shared/reference/NAME``; skip (fail in CI) when the shared tree is absent."""
    path = find_reference(name)
    require(path is not None, f"shared reference data not found: {name} (expected in ../shared/reference)")
    assert path is not None
    return path

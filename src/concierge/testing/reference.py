"""Locate the team's shared reference data (QAPI schemas ...) beside the repository.

The data lives in ``../shared/reference`` next to the checkout (CI lays it there too);
``CONCIERGE_SHARED`` overrides the location. Tests using it skip cleanly when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]


def reference_file(name: str) -> Path:
    """Path of ``shared/reference/NAME``, or skip the test when the shared tree is absent."""
    base = Path(os.environ.get("CONCIERGE_SHARED", REPO_ROOT.parent / "shared"))
    path = base / "reference" / name
    if not path.is_file():
        pytest.skip(f"shared reference data not found: {path}")
    return path

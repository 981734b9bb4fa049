"""Locate the team's shared reference data (QAPI schemas ...) beside the repository, or skip.

The data lives in ``../shared/reference`` next to the checkout (CI lays it there too);
``CONCIERGE_SHARED`` overrides the location.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from concierge.testing.qapi import find_reference


def reference_file(name: str) -> Path:
    """Path of ``shared/reference/NAME``, or skip the test when the shared tree is absent."""
    path = find_reference(name)
    if path is None:
        pytest.skip(f"shared reference data not found: {name}")
    return path

"""The committed fuzz corpus replays cleanly through every target, and the harness can fail.

The fuzz runner (``tools/fuzz/run.py``, called by ``.ci/run``) explores new inputs under atheris;
this replays the minimised corpus deterministically, without atheris, so a regression on any
input the fuzzers once found interesting fails a plain pytest run too.
"""

from __future__ import annotations

import importlib
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "tools" / "fuzz"
sys.path.insert(0, str(FUZZ))

from fuzz_common import DesyncError, same_for_every_chunking  # noqa: E402

TARGETS = ("qga", "ovirt", "spice", "session", "config")


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_corpus_replays_without_finding(target: str) -> None:
    module = importlib.import_module(f"fuzz_{target}")
    files = sorted((FUZZ / "corpus" / target).iterdir())
    assert files, f"no committed corpus for {target}"
    for path in files:
        module.one_input(path.read_bytes())


def test_fuzz_harness_reports_a_chunking_dependent_decoder() -> None:
    def make() -> object:
        def feed(piece: bytes) -> Iterator[bytes]:
            yield piece  # one "message" per read: wrong for a stream decoder

        return feed

    with pytest.raises(DesyncError):
        same_for_every_chunking(make, random.Random(1), b"two reads")  # type: ignore[arg-type]

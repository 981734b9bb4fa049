"""Fixtures of the SPICE tests; the code lives in spice_testkit.py (a unique module name)."""

from spice_testkit import spice_pair

__all__ = ["spice_pair"]

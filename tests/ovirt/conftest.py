"""Fixtures of the oVirt/SSO tests; the code lives in ovirt_harness.py (a unique module name)."""

from ovirt_harness import closers, logind, peers, system_bus

__all__ = ["closers", "logind", "peers", "system_bus"]

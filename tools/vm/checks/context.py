"""What every check gets: the running guest, a results store shared across phases, and options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vm import GuestVM


@dataclass
class E2EContext:
    """Shared by the checks of one run-e2e invocation."""

    vm: GuestVM
    label: str = "stock"  # which agent currently owns the ports
    results: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def port(self, name: str) -> Path:
        return self.vm.socket(name)

    @property
    def qga(self) -> Path:
        return self.vm.socket("org.qemu.guest_agent.0")

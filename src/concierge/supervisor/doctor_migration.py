"""``concierge doctor``: what was carried over from qemu-ga, or what still should be."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from concierge.config import qemu_ga
from concierge.supervisor.doctor_checks import INFO, OK, WARN, Finding


def probe_qemu_ga(root: Path) -> Iterator[Finding]:
    """The drop-in written by ``config import-qemu-ga`` (what it carried), else qemu-ga
    settings found on this guest that nothing carried over (blocked commands would be lost)."""
    dropin = root / qemu_ga.DROPIN
    if dropin.exists():
        carried = qemu_ga.carried_over(dropin)
        detail = "carried over: " + "; ".join(carried) if carried else "imported: qemu-ga's defaults only"
        yield Finding("migration", "qemu-ga", OK, f"{detail} ({dropin})", {"carried": carried, "dropin": str(dropin)})
        return
    settings = qemu_ga.read_qemu_ga(root)
    if not settings.sources:
        yield Finding("migration", "qemu-ga", OK, "no qemu-ga configuration on this guest", {"carried": []})
        return
    _tables, carried, _skipped = qemu_ga.plan(settings)
    if carried:
        detail = "not carried over yet: " + "; ".join(carried) + " (run: concierge config import-qemu-ga)"
        yield Finding("migration", "qemu-ga", WARN, detail, {"pending": carried, "sources": settings.sources})
    else:
        yield Finding("migration", "qemu-ga", INFO, "qemu-ga configuration holds only defaults", {"carried": []})

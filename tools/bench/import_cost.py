"""What importing something costs a process: PSS growth measured in a fresh interpreter."""

from __future__ import annotations

import statistics
import subprocess
import sys

_PROBE = """
import sys
sys.path[:0] = {path!r}
def pss():
    for line in open('/proc/self/smaps_rollup'):
        if line.startswith('Pss:'):
            return int(line.split()[1])
before = pss()
{code}
print(pss() - before)
"""


def import_cost_mb(code: str, *, path: tuple[str, ...] = (), runs: int = 3) -> float:
    """Median PSS growth (MB) of running ``code`` (imports and a first call) in a new python."""
    probe = _PROBE.format(path=list(path), code=code)
    samples = [int(subprocess.check_output([sys.executable, "-c", probe], text=True)) for _ in range(runs)]
    return statistics.median(samples) / 1024

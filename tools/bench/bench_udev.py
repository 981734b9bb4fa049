"""udev properties of a block device: the monitor's hand reader of ``/run/udev/data`` vs pyudev
(libudev through ctypes), and what importing pyudev costs a process (PSS). Needs root: the
device's udev database entry is written into a private /run/udev (a mount namespace), so both
readers read the same file.

    sudo .venv/bin/python tools/bench/bench_udev.py [--device vda] [--runs 2000]

pyudev is not a dependency of Concierge (see docs/benchmarks.md): install it in the venv to
run this (``.venv/bin/pip install pyudev``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from import_cost import import_cost_mb

SRC = str(Path(__file__).resolve().parents[2] / "src")
BENCH = """
import statistics, sys, time
sys.path.insert(0, {src!r})
import pyudev
from concierge.actors.monitor.blockdev import UdevDb
syspath, runs = '/sys/class/block/{device}', {runs}
ours, theirs = UdevDb(), pyudev.Context()
assert ours.properties(syspath)['ID_SERIAL'] == pyudev.Devices.from_sys_path(theirs, syspath).properties['ID_SERIAL']
def timed(fn):
    samples = []
    for _ in range(runs):
        t = time.perf_counter_ns(); fn(); samples.append(time.perf_counter_ns() - t)
    return statistics.median(samples) / 1000
a = timed(lambda: ours.properties(syspath))
b = timed(lambda: dict(pyudev.Devices.from_sys_path(theirs, syspath).properties))
print(f'{{a:.1f}} {{b:.1f}}')
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="vda")
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (a private /run/udev in a mount namespace)")
    major, minor = Path(f"/sys/class/block/{args.device}/dev").read_text().split(":")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        props = {f"ID_PROP_{i}": f"value-{i}" for i in range(20)} | {"ID_SERIAL": "bench-serial", "ID_FS_TYPE": "ext4"}
        entry = "".join(f"E:{k}={v}\n" for k, v in props.items()) + "I:1234567\nG:systemd\nQ:systemd\nV:1\n"
        (data / f"b{major}:{int(minor)}").write_text(entry)
        script = 'mount --bind "$1" /run/udev && shift && exec "$@"'
        Path("/run/udev").mkdir(exist_ok=True)
        code = BENCH.format(src=SRC, device=args.device, runs=args.runs)
        out = subprocess.check_output(
            ["unshare", "-m", "sh", "-c", script, "sh", tmp, sys.executable, "-c", code], text=True
        ).split()
    first_use = f"import pyudev\npyudev.Devices.from_sys_path(pyudev.Context(), '/sys/class/block/{args.device}')"
    extra_mb = import_cost_mb(first_use)
    print(f"properties of /dev/{args.device} (22 udev properties), median of {args.runs}:")
    print(f"  hand reader (/run/udev/data) : {float(out[0]):7.1f} us")
    print(f"  pyudev (libudev via ctypes)  : {float(out[1]):7.1f} us")
    print(f"  importing pyudev + libudev   : +{extra_mb:.1f} MB PSS")


if __name__ == "__main__":
    main()

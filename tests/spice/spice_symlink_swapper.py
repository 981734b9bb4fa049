"""A stdlib-only attacker run as an unprivileged user (setpriv) by the symlink tests.

Usage: spice_symlink_swapper.py DIRECTORY STOPFILE COUNTFILE TARGET...
Until STOPFILE exists, replaces every name root ever used in DIRECTORY (``session.sock``,
``session.sock.lock``) with a symlink to each TARGET in turn, atomically (symlink + rename), as
fast as it can. Writes the number of completed swaps to COUNTFILE at the end. Runs under
/usr/bin/python3 (no venv).
"""

import contextlib
import os
import sys

NAMES = ("session.sock", "session.sock.lock")


def main() -> None:
    directory, stop, countfile, *targets = sys.argv[1:]
    swaps = 0
    while not os.path.exists(stop):
        for target in targets:
            for name in NAMES:
                tmp = os.path.join(directory, f".swap-{os.getpid()}")
                try:
                    os.symlink(target, tmp)
                    os.rename(tmp, os.path.join(directory, name))
                    swaps += 1
                except OSError:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
    with open(countfile, "w") as out:
        out.write(str(swaps))


if __name__ == "__main__":
    main()

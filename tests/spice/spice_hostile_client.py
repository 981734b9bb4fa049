"""A stdlib-only hostile session process run as an unprivileged user (setpriv) by the tests.

Usage: spice_hostile_client.py SOCKET CASEFILE OUTFILE
CASEFILE: one case per line, hex frames separated by spaces. For each case: a fresh connection,
the frames in order, then everything the gateway says until it closes the connection or stays
silent for 5 s. OUTFILE: one line per case, ``CLOSED <hex>`` or ``OPEN <hex>`` (or ``ERR errno``).
Runs under /usr/bin/python3 (no venv).
"""

import select
import socket
import sys
import time


def run_case(path: str, frames: list[bytes]) -> str:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as err:
        return f"ERR {err.errno}"
    received = b""
    with sock:
        for frame in frames:
            try:
                sock.sendall(frame)
            except OSError:
                break  # closed on us: the reason is still readable
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                return f"CLOSED {received.hex()}"
            received += data
    return f"OPEN {received.hex()}"


def main() -> None:
    path, casefile, outfile = sys.argv[1:]
    with open(casefile) as cases, open(outfile, "w", buffering=1) as out:
        for line in cases:
            out.write(run_case(path, [bytes.fromhex(h) for h in line.split()]) + "\n")


if __name__ == "__main__":
    main()

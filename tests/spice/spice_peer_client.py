"""A stdlib-only gateway client run as another uid (setpriv) by the gateway attack tests.

Usage: spice_peer_client.py SOCKET MODE OUTFILE HEXFRAME...
MODE ``plain``: connect, send the frames, record what comes back until EOF or 3 s of silence.
MODE ``hold``: same, but keep the connection until EOF (killed by the test).
MODE ``late``: send the first frame, wait until OUTFILE.go exists, send the others, then hold.
MODE ``fork``: connect, fork; the connecting parent exits; the child waits until the parent is
gone (PID reuse scenario) and only then sends the frames.
Output lines: ``ERR <errno>``, ``RX <hex>``, ``EOF``. Runs under /usr/bin/python3 (no venv).
"""

import os
import select
import socket
import sys
import time


def main() -> None:
    path, mode, outfile, *frames = sys.argv[1:]
    out = open(outfile, "a", buffering=1)  # noqa: SIM115 - lives for the whole process
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as err:
        out.write(f"ERR {err.errno}\n")
        return
    if mode == "fork":
        parent = os.getpid()
        if os.fork():
            os._exit(0)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{parent}") and time.monotonic() < deadline:
            time.sleep(0.01)
    for n, frame in enumerate(frames):
        if mode == "late" and n == 1:
            deadline = time.monotonic() + 10
            while not os.path.exists(outfile + ".go") and time.monotonic() < deadline:
                if select.select([sock], [], [], 0.01)[0]:  # record what arrives meanwhile
                    data = sock.recv(65536)
                    out.write(f"RX {data.hex()}\n" if data else "EOF\n")
                    if not data:
                        return
        try:
            sock.sendall(bytes.fromhex(frame))
        except OSError as err:  # refused before we spoke: still read the reject frame
            out.write(f"SENDERR {err.errno}\n")
            break
    idle = None if mode in ("hold", "late") else 3.0
    while True:
        ready, _, _ = select.select([sock], [], [], idle)
        if not ready:
            break
        data = sock.recv(65536)
        if not data:
            out.write("EOF\n")
            break
        out.write(f"RX {data.hex()}\n")


if __name__ == "__main__":
    main()

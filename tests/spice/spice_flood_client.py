"""A stdlib-only resource attacker run as an unprivileged user (setpriv) by the limit tests.

Usage: spice_flood_client.py SOCKET OUTFILE STOPFILE MODE COUNT [SIZE]
MODE ``bigframe``: COUNT connections that never say hello, each announcing a SIZE-byte frame and
streaming its body (zeros, 1 MiB writes, round robin) until the gateway closes it.
MODE ``idle``: COUNT connections that say nothing.
Either way the connections are then held until STOPFILE exists (or the gateway closes them).
OUTFILE gets ``connected N``, ``refused N`` (connect failed), ``sent <bytes per connection>``,
then once STOPFILE appears ``closed N open N`` (connections the gateway closed / still open).
Runs under /usr/bin/python3 (no venv).
"""

import contextlib
import os
import resource
import select
import socket
import struct
import sys
import time


def gone(sock: socket.socket) -> bool:
    """True when the gateway closed the connection (EOF or reset after any reject frame)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    try:
        while poller.poll(0):
            if not sock.recv(65536):
                return True
    except OSError:
        return True
    return False


def connect(path: str) -> "socket.socket | None":
    """Connect, retrying while the listen backlog is full (EAGAIN), for up to 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            sock.connect(path)
        except BlockingIOError:
            sock.close()
            time.sleep(0.001)
            continue
        except OSError:
            sock.close()
            return None
        sock.setblocking(True)
        sock.settimeout(10)
        return sock
    return None


def main() -> None:
    path, outfile, stop, mode, count, *rest = sys.argv[1:]
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out = open(outfile, "w", buffering=1)  # noqa: SIM115 - lives for the whole process
    socks, refused = [], 0
    for _ in range(int(count)):
        sock = connect(path)
        if sock is None:
            refused += 1
            continue
        socks.append(sock)
    out.write(f"connected {len(socks)}\nrefused {refused}\n")
    sent = [0] * len(socks)
    if mode == "bigframe":
        size = int(rest[0])
        chunk = bytes(1 << 20)
        live = set(range(len(socks)))
        for i in live:
            with contextlib.suppress(OSError):
                socks[i].sendall(struct.pack(">I", size))
        while live:
            for i in list(live):
                try:
                    socks[i].sendall(chunk[: min(len(chunk), size - sent[i])])
                    sent[i] += min(len(chunk), size - sent[i])
                except OSError:
                    live.discard(i)
                    continue
                if sent[i] >= size:
                    live.discard(i)
    out.write(f"sent {' '.join(map(str, sent))}\n")
    while not os.path.exists(stop):
        time.sleep(0.05)
    closed = sum(1 for s in socks if gone(s))
    out.write(f"closed {closed} open {len(socks) - closed}\n")


if __name__ == "__main__":
    main()

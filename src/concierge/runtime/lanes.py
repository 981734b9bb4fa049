"""Lanes: one unix datagram socket per actor process, beside ZeroMQ.

Why: a ZeroMQ ipc round trip costs four thread wake-ups (the application and I/O threads of
both ends), ~120 µs on a small guest before any of our code runs. A request or reply that fits
one datagram goes straight from the sending thread to the peer's lane: one ``sendto``, one
wake-up. The bridge falls back to ZeroMQ for anything bigger and for any datagram the kernel
refuses (peer restarting, queue full).

Sending keeps one *connected* socket per peer: a ``sendto`` by path walks the filesystem on
every message, and a connected socket tells us the peer's incarnation died (ECONNREFUSED: its
socket closed, and the datagrams queued in it went with it). That death is reported to the
bridge at once, so the requests that went on the dead socket are answered UNAVAILABLE without
waiting for the supervisor's ``down`` notice (see :class:`LaneOut`).
"""

from __future__ import annotations

import array
import contextlib
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

#: largest header + body sent as one lane datagram; larger messages take ZeroMQ
LANE_MAX = 60_000
#: receive buffer of a lane; bounds what a flood can queue in the kernel for one process
LANE_RCVBUF = 256 * 1024
#: read size of one datagram (more than LANE_MAX: an oversized one is read whole and refused)
LANE_RECV = 65_536

#: most fds one lane datagram may carry (SCM_RIGHTS); a datagram with more is refused whole
MAX_LANE_FDS = 4
#: ancillary buffer of one receive: room for exactly MAX_LANE_FDS descriptors
LANE_ANCILLARY = socket.CMSG_SPACE(MAX_LANE_FDS * array.array("i").itemsize)

#: the supervisor's ``down`` notice follows an exit by milliseconds; a death seen on a lane
#: waits this long for its notice at most
DOWN_WITHIN_S = 10.0

_FLAGS = socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC


def bind_lane(path: Path) -> socket.socket:
    """This process's own lane at ``path`` (a stale one from a dead incarnation is replaced)."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, _FLAGS)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, LANE_RCVBUF)
    sock.bind(str(path))
    path.chmod(0o600)
    return sock


class LaneOut:
    """Connected sockets to the peers' lanes; :meth:`send` is safe from any thread.

    ``on_dead(dst, sock)`` is called (on the sending thread) once per socket whose peer is
    found dead; the socket is out of the table by then, so the next send reaches the peer's
    successor, or is refused until it binds. Such a death is remembered until the supervisor's
    ``down`` notice for it (:meth:`down`).
    """

    __slots__ = ("_counters", "_deaths_seen", "_lane_path", "_lock", "_on_dead", "_socks")

    def __init__(
        self,
        lane_path: Callable[[str], Path],
        counters: Counter[str],
        on_dead: Callable[[str, socket.socket], None],
    ) -> None:
        self._lane_path = lane_path
        self._counters = counters
        self._on_dead = on_dead
        self._socks: dict[str, socket.socket] = {}
        # when deaths of a peer were seen on its lane, until the supervisor's ``down`` notice
        self._deaths_seen: dict[str, list[float]] = {}
        self._lock = threading.Lock()  # never on the path of a send that succeeds

    def connected(self, dst: str) -> bool:
        """True while a socket to a live incarnation of ``dst`` is held (any thread)."""
        return dst in self._socks

    def send(self, dst: str, datagram: bytes) -> socket.socket | None:
        """Send one datagram to ``dst``; the connected socket it went on, or None when it is
        too big or the kernel refuses it (peer absent or dead, queue full)."""
        return self.send_or_why(dst, datagram)[0]

    def send_or_why(self, dst: str, datagram: bytes, fds: tuple[int, ...] = ()) -> tuple[socket.socket | None, bool]:
        """:meth:`send`, and whether no process listens at ``dst``'s lane (dead or not up
        yet): a message that then takes ZeroMQ can only reach a successor. ``fds`` go along
        as SCM_RIGHTS (the kernel dups them into the receiver; ours stay open)."""
        if len(datagram) > LANE_MAX or len(fds) > MAX_LANE_FDS:
            return None, False
        sock = self._socks.get(dst)
        if sock is not None:
            try:
                _send(sock, datagram, fds)
            except BlockingIOError:  # the peer is behind: its queue is full
                self._counters["lane.full"] += 1
                return None, False
            except OSError:  # the peer's socket is closed: that incarnation is gone
                self._retire(dst, sock)
            else:
                self._counters["msg.out"] += 1
                return sock, False
        sock = socket.socket(socket.AF_UNIX, _FLAGS)
        try:
            sock.connect(str(self._lane_path(dst)))
        except OSError:
            sock.close()
            self._counters["lane.refused"] += 1
            return None, True
        try:
            _send(sock, datagram, fds)
        except OSError:  # bound but full, or gone between connect and send
            sock.close()
            self._counters["lane.refused"] += 1
            return None, False
        with self._lock:
            kept = self._socks.setdefault(dst, sock)
        if kept is not sock:  # another thread connected too, to the same incarnation: keep one
            sock.close()
        self._counters["msg.out"] += 1
        return kept, False

    def _retire(self, dst: str, sock: socket.socket) -> None:
        with self._lock:
            if self._socks.get(dst) is not sock:  # another thread or a ``down`` got there first
                return
            del self._socks[dst]
            self._deaths_seen.setdefault(dst, []).append(time.monotonic())
        self._counters["lane.peer_dead"] += 1
        self._on_dead(dst, sock)

    def down(self, dst: str) -> tuple[bool, socket.socket | None]:
        """The supervisor says ``dst`` exited. ``(True, None)`` if a send saw that death
        first (then the socket now open, if any, is its successor's and stays); else
        ``(False, the socket to the dead process or None)``, dropped from the table."""
        with self._lock:
            # a death seen long ago whose notice never came (the supervisor announces within
            # milliseconds) must not make us ignore the notice of a later one
            recent = [t for t in self._deaths_seen.pop(dst, []) if time.monotonic() - t < DOWN_WITHIN_S]
            if recent:
                if len(recent) > 1:
                    self._deaths_seen[dst] = recent[1:]
                return True, None
            return False, self._socks.pop(dst, None)

    def close(self) -> None:
        """Close every socket (the process is ending)."""
        with self._lock:
            socks, self._socks = list(self._socks.values()), {}
        for sock in socks:
            sock.close()


def _send(sock: socket.socket, datagram: bytes, fds: tuple[int, ...]) -> None:
    if fds:
        sock.sendmsg([datagram], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.send(datagram)


def recv_lane(sock: socket.socket, counters: Counter[str]) -> tuple[bytes, tuple[int, ...]] | None:
    """One datagram from our lane and the descriptors it carried, or None (nothing queued, or
    refused: its descriptors are closed here). The caller owns the returned fds and must close
    every one whatever it does with the datagram. A datagram whose descriptors did not all fit
    (MSG_CTRUNC: the kernel closed the rest) is refused whole, so nobody acts on a partial set."""
    data, ancdata, flags, _ = sock.recvmsg(LANE_RECV, LANE_ANCILLARY)
    if not ancdata:
        return data, ()
    fds = array.array("i")
    for level, kind, blob in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(blob[: len(blob) - len(blob) % fds.itemsize])
    if flags & socket.MSG_CTRUNC or len(fds) > MAX_LANE_FDS:
        close_fds(fds)
        counters["lane.fds_refused"] += 1
        return None
    return data, tuple(fds)


def close_fds(fds: array.array[int] | tuple[int, ...]) -> None:
    """Close received descriptors (each at most once; a bad one is not our problem)."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)

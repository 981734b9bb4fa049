"""Who is on the other end of a unix socket: SO_PEERCRED plus /proc checks against PID reuse.

Standard library only. Nothing here trusts message content.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from pathlib import Path

_UCRED = struct.Struct("=iII")  # struct ucred {pid_t pid; uid_t uid; gid_t gid}


@dataclass(frozen=True, slots=True)
class Peer:
    """Kernel-attested credentials of a connected process, plus its start time (jiffies)."""

    pid: int
    uid: int
    gid: int
    start_time: int


def proc_uid(pid: int, proc: Path = Path("/proc")) -> int | None:
    """Real uid of ``pid`` from /proc, None if the process is gone."""
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def proc_start_time(pid: int, proc: Path = Path("/proc")) -> int | None:
    """Field 22 of /proc/PID/stat (start time since boot): tells a reused PID apart."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def peer_of(sock: socket.socket) -> Peer:
    """SO_PEERCRED of a connected unix socket (the credentials at connect() time)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(pid, uid, gid, proc_start_time(pid) or -1)


def still_same_process(peer: Peer) -> bool:
    """False when the connecting PID exited or was reused (other uid or other start time).

    SO_PEERCRED names the process that called connect(); if that process exits and the fd lives
    on in another one (or the PID is recycled), /proc/PID no longer describes the sender.
    """
    return proc_uid(peer.pid) == peer.uid and proc_start_time(peer.pid) == peer.start_time

"""Descriptors on lanes (SCM_RIGHTS): delivered intact, bounded per datagram, never leaked."""

from __future__ import annotations

import array
import os
import socket
from collections import Counter
from pathlib import Path

from concierge.runtime.lanes import MAX_LANE_FDS, LaneOut, bind_lane, close_fds, recv_lane


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _lanes(tmp_path: Path) -> tuple[socket.socket, LaneOut, Counter[str]]:
    counters: Counter[str] = Counter()
    inbox = bind_lane(tmp_path / "peer.lane")
    out = LaneOut(lambda dst: tmp_path / f"{dst}.lane", counters, lambda *_: None)
    return inbox, out, counters


def test_runtime_lane_fds_arrive_as_the_same_open_files(tmp_path: Path) -> None:
    inbox, out, _ = _lanes(tmp_path)
    r, w = os.pipe()
    try:
        sock, _ = out.send_or_why("peer", b"hello", (r, w))
        assert sock is not None
        got = recv_lane(inbox, Counter())
        assert got is not None
        data, fds = got
        assert data == b"hello" and len(fds) == 2
        assert [os.fstat(fd).st_ino for fd in fds] == [os.fstat(r).st_ino, os.fstat(w).st_ino]
        os.write(fds[1], b"x")  # the received write end feeds our pipe
        assert os.read(r, 1) == b"x"
        close_fds(fds)
    finally:
        os.close(r)
        os.close(w)
        out.close()
        inbox.close()


def test_runtime_lane_fds_over_the_bound_are_refused_and_closed(tmp_path: Path) -> None:
    inbox, out, counters = _lanes(tmp_path)
    too_many = [os.open(os.devnull, os.O_RDONLY) for _ in range(MAX_LANE_FDS + 1)]
    try:
        # our own sender refuses
        assert out.send_or_why("peer", b"x", tuple(too_many)) == (None, False)
        # a hostile sender: the receiver takes what fits, refuses the datagram, closes them all
        before = _open_fds()
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        raw.connect(str(tmp_path / "peer.lane"))
        raw.sendmsg([b"evil"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", too_many))])
        raw.sendmsg([b"plain"])
        refused = Counter[str]()
        assert recv_lane(inbox, refused) is None
        assert refused["lane.fds_refused"] == 1
        assert recv_lane(inbox, refused) == (b"plain", ())
        raw.close()
        assert _open_fds() == before  # nothing received stays open
    finally:
        close_fds(tuple(too_many))
        out.close()
        inbox.close()
    assert counters["lane.fds_refused"] == 0

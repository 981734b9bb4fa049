"""File transfer actor against a real directory: names, limits, locks, cancellation."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest
from session_helpers import sent, wait_until

from concierge.actors.filexfer.names import UnsafeNameError, candidates, parse_keyfile, safe_name
from concierge.actors.filexfer.node import FileXferNode
from concierge.actors.vdagent import Cap, XferResult
from concierge.testing.context import FakeContext

DETAILED = [1 << Cap.FILE_XFER_DETAILED_ERRORS]


def keyfile(name: str, size: int) -> bytes:
    return f"[vdagent-file-xfer]\nname={name}\nsize={size}\n".encode() + b"\0"


@pytest.fixture()
def xfer(tmp_path: Path, session_ctx: Any) -> FakeContext:
    ctx: FakeContext = session_ctx(
        "filexfer",
        {"directory": str(tmp_path / "dl"), "reserve_bytes": 0, "max_total_bytes": 10_000},
    )
    ctx.run_node(FileXferNode)
    ctx.tell("spice.announce_capabilities", {"request": 1, "caps": DETAILED})
    return ctx


def status(ctx: FakeContext, xfer_id: int, n: int = 1) -> list[dict[str, Any]]:
    return wait_until(
        lambda: (s := [b for b in sent(ctx, "file_xfer_status") if b["id"] == xfer_id]) and len(s) >= n and s,
        what=f"status of {xfer_id}",
    )


def test_file_arrives_complete_in_chunks(xfer: FakeContext, tmp_path: Path) -> None:
    payload = os.urandom(5000)
    xfer.tell("spice.file_xfer_start", {"id": 1, "data": keyfile("report.pdf", len(payload))})
    assert status(xfer, 1)[0]["result"] == XferResult.CAN_SEND_DATA
    xfer.tell("spice.file_xfer_data", {"id": 1, "size": 3000, "data": payload[:3000]})
    xfer.tell("spice.file_xfer_data", {"id": 1, "size": 2000, "data": payload[3000:]})
    assert status(xfer, 1, 2)[1]["result"] == XferResult.SUCCESS
    assert (tmp_path / "dl" / "report.pdf").read_bytes() == payload


def test_existing_name_is_never_overwritten(xfer: FakeContext, tmp_path: Path) -> None:
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "a.txt").write_bytes(b"mine")
    (tmp_path / "dl" / "a (1).txt").write_bytes(b"mine too")
    xfer.tell("spice.file_xfer_start", {"id": 2, "data": keyfile("a.txt", 3)})
    status(xfer, 2)
    xfer.tell("spice.file_xfer_data", {"id": 2, "size": 3, "data": b"new"})
    assert status(xfer, 2, 2)[1]["result"] == XferResult.SUCCESS
    assert (tmp_path / "dl" / "a.txt").read_bytes() == b"mine"
    assert (tmp_path / "dl" / "a (1).txt").read_bytes() == b"mine too"
    assert (tmp_path / "dl" / "a (2).txt").read_bytes() == b"new"


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "..", "a/../../b", "..\\x", "x\\nname", "", "-rf"])
def test_traversal_and_bad_names_refused(xfer: FakeContext, tmp_path: Path, name: str) -> None:
    xfer.tell("spice.file_xfer_start", {"id": 3, "data": keyfile(name, 1)})
    st = status(xfer, 3)[0]
    assert st["result"] == XferResult.ERROR
    assert struct.unpack("<BI", st["data"]) == (0, 10)  # G_IO_ERROR_INVALID_FILENAME
    assert not (tmp_path / "evil").exists()
    assert list((tmp_path).rglob("*evil*")) == []


def test_symlink_in_place_is_not_followed(xfer: FakeContext, tmp_path: Path) -> None:
    (tmp_path / "dl").mkdir()
    target = tmp_path / "outside"
    (tmp_path / "dl" / "link").symlink_to(target)
    xfer.tell("spice.file_xfer_start", {"id": 9, "data": keyfile("link", 2)})
    status(xfer, 9)
    xfer.tell("spice.file_xfer_data", {"id": 9, "size": 2, "data": b"hi"})
    status(xfer, 9, 2)
    assert not target.exists()
    assert (tmp_path / "dl" / "link (1)").read_bytes() == b"hi"


def test_quota_and_size_limits(xfer: FakeContext) -> None:
    xfer.tell("spice.file_xfer_start", {"id": 4, "data": keyfile("big.iso", 20_000)})
    st = status(xfer, 4)[0]
    assert st["result"] == XferResult.ERROR
    assert struct.unpack("<BI", st["data"])[1] == 12  # G_IO_ERROR_NO_SPACE
    xfer.tell("spice.file_xfer_start", {"id": 5, "data": keyfile("a.bin", 6000)})
    assert status(xfer, 5)[0]["result"] == XferResult.CAN_SEND_DATA
    xfer.tell("spice.file_xfer_start", {"id": 6, "data": keyfile("b.bin", 6000)})  # 12000 > 10000
    assert status(xfer, 6)[0]["result"] == XferResult.ERROR


def test_not_enough_space_reports_free_bytes(tmp_path: Path, session_ctx: Any) -> None:
    ctx: FakeContext = session_ctx(
        "filexfer",
        {"directory": str(tmp_path), "reserve_bytes": 1 << 62, "max_total_bytes": 1 << 62},
    )
    ctx.run_node(FileXferNode)
    ctx.tell("spice.announce_capabilities", {"request": 1, "caps": DETAILED})
    ctx.tell("spice.file_xfer_start", {"id": 7, "data": keyfile("x", 1)})
    st = status(ctx, 7)[0]
    assert st["result"] == XferResult.NOT_ENOUGH_SPACE
    (free,) = struct.unpack("<Q", st["data"])
    assert free > 0


def test_locked_and_greeter_sessions_refused(xfer: FakeContext, tmp_path: Path) -> None:
    xfer.tell("spice.file_xfer_start", {"id": 10, "data": keyfile("a", 1), "session_locked": True})
    xfer.tell("spice.file_xfer_start", {"id": 11, "data": keyfile("a", 1), "greeter": True})
    assert status(xfer, 10)[0]["result"] == XferResult.SESSION_LOCKED
    assert status(xfer, 11)[0]["result"] == XferResult.DISABLED
    assert not (tmp_path / "dl" / "a").exists()


def test_without_detailed_errors_results_collapse(tmp_path: Path, session_ctx: Any) -> None:
    ctx: FakeContext = session_ctx("filexfer", {"directory": str(tmp_path)})
    ctx.run_node(FileXferNode)
    ctx.tell("spice.file_xfer_start", {"id": 12, "data": keyfile("a", 1), "session_locked": True})
    st = status(ctx, 12)[0]
    assert st["result"] == XferResult.ERROR and "data" not in st


def test_cancel_and_disconnect_remove_partial_files(xfer: FakeContext, tmp_path: Path) -> None:
    xfer.tell("spice.file_xfer_start", {"id": 20, "data": keyfile("part1", 100)})
    xfer.tell("spice.file_xfer_start", {"id": 21, "data": keyfile("part2", 100)})
    status(xfer, 20)
    status(xfer, 21)
    xfer.tell("spice.file_xfer_data", {"id": 20, "size": 10, "data": b"0123456789"})
    wait_until(lambda: (tmp_path / "dl" / "part1").stat().st_size == 10)
    xfer.tell("spice.file_xfer_status", {"id": 20, "result": XferResult.CANCELLED})
    wait_until(lambda: not (tmp_path / "dl" / "part1").exists(), what="cancelled file removed")
    xfer.tell("spice.client_disconnected", {})
    wait_until(lambda: not (tmp_path / "dl" / "part2").exists(), what="disconnect cleanup")


def test_overflow_is_an_error_and_removes_file(xfer: FakeContext, tmp_path: Path) -> None:
    xfer.tell("spice.file_xfer_start", {"id": 30, "data": keyfile("o", 2)})
    status(xfer, 30)
    xfer.tell("spice.file_xfer_data", {"id": 30, "size": 3, "data": b"abc"})
    assert status(xfer, 30, 2)[1]["result"] == XferResult.ERROR
    assert not (tmp_path / "dl" / "o").exists()


def test_blobs_carry_large_chunks(xfer: FakeContext, tmp_path: Path) -> None:
    xfer.tell("spice.file_xfer_start", {"id": 40, "name": "blob.bin", "size": 4})
    status(xfer, 40)
    assert xfer.node is not None
    from concierge.runtime.node import Incoming

    xfer.call_soon(
        lambda: xfer.node.handle(  # type: ignore[union-attr]
            Incoming(
                kind="cast",
                type="spice.file_xfer_data",
                body={"id": 40, "size": 4},
                src="session",
                blobs=(b"ab", b"cd"),
            )
        )
    )
    assert status(xfer, 40, 2)[1]["result"] == XferResult.SUCCESS
    assert (tmp_path / "dl" / "blob.bin").read_bytes() == b"abcd"


def test_name_helpers() -> None:
    assert parse_keyfile(keyfile("a\\sb.txt", 5)) == {"name": "a b.txt", "size": "5"}
    assert list(candidates("a.tar", 2)) == ["a.tar", "a (1).tar", "a (2).tar"]
    assert list(candidates(".rc", 1)) == [".rc", ".rc (1)"]
    with pytest.raises(UnsafeNameError, match=r"^name contains control characters$"):
        safe_name("a\u202eb")
    assert safe_name("résumé.txt") == "résumé.txt"

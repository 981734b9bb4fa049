"""Every refusal of the file-transfer actor, each named by its GIO code and its logged reason.

The actor runs in its FakeContext exactly as in its session process; requests arrive as the
session gateway forwards them from the SPICE client. Each refusal is checked three ways: the
STATUS the client gets (``ERROR`` + the GIO code), the reason in the log (so a different check
refusing for another cause cannot pass the test), and that nothing was written.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from session_helpers import sent, wait_until

from concierge.actors.filexfer.node import FileXferNode
from concierge.actors.vdagent import Cap, XferResult
from concierge.testing.context import FakeContext

DETAILED = [1 << Cap.FILE_XFER_DETAILED_ERRORS]
INVALID_FILENAME, NO_SPACE, INVALID_ARGUMENT, TOO_MANY_OPEN_FILES = 10, 12, 13, 31  # GIOErrorEnum


def keyfile(name: str, size: int | str) -> bytes:
    return f"[vdagent-file-xfer]\nname={name}\nsize={size}\n".encode() + b"\0"


def _start(session_ctx: Any, directory: Path | None, **settings: Any) -> FakeContext:
    conf: dict[str, Any] = {"reserve_bytes": 0, **settings}
    if directory is not None:
        conf["directory"] = str(directory)
    ctx: FakeContext = session_ctx("filexfer", conf)
    ctx.run_node(FileXferNode)
    ctx.tell("spice.announce_capabilities", {"request": 1, "caps": DETAILED})
    return ctx


def _statuses(ctx: FakeContext, xfer_id: int, n: int = 1) -> list[dict[str, Any]]:
    return wait_until(
        lambda: (s := [b for b in sent(ctx, "file_xfer_status") if b["id"] == xfer_id]) and len(s) >= n and s,
        what=f"status of {xfer_id}",
    )


def _refused(ctx: FakeContext, xfer_id: int, gio: int, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    st = wait_until(
        lambda: next((b for b in sent(ctx, "file_xfer_status") if b["id"] == xfer_id and b["result"]), None),
        what=f"refusal of {xfer_id}",
    )
    assert st["result"] == XferResult.ERROR, st
    assert struct.unpack("<BI", st["data"]) == (0, gio), st
    assert reason in [r.getMessage().split(": ", 1)[-1] for r in caplog.records if r.name.endswith("filexfer.node")]


@pytest.fixture(autouse=True)
def _log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="concierge.actors.filexfer.node")


def test_duplicate_id_is_refused_and_the_first_transfer_goes_on(
    session_ctx: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = _start(session_ctx, tmp_path / "dl")
    ctx.tell("spice.file_xfer_start", {"id": 50, "data": keyfile("one.txt", 3)})
    assert _statuses(ctx, 50)[0]["result"] == XferResult.CAN_SEND_DATA
    ctx.tell("spice.file_xfer_start", {"id": 50, "data": keyfile("two.txt", 3)})
    _refused(ctx, 50, INVALID_ARGUMENT, "transfer id already in use", caplog)
    assert not (tmp_path / "dl" / "two.txt").exists()
    ctx.tell("spice.file_xfer_data", {"id": 50, "size": 3, "data": b"abc"})
    assert _statuses(ctx, 50, 3)[2]["result"] == XferResult.SUCCESS
    assert (tmp_path / "dl" / "one.txt").read_bytes() == b"abc"


def test_too_many_transfers_is_refused_until_one_ends(
    session_ctx: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = _start(session_ctx, tmp_path / "dl", max_transfers=2)
    for xid in (1, 2):
        ctx.tell("spice.file_xfer_start", {"id": xid, "data": keyfile(f"f{xid}", 1)})
        assert _statuses(ctx, xid)[0]["result"] == XferResult.CAN_SEND_DATA
    ctx.tell("spice.file_xfer_start", {"id": 3, "data": keyfile("f3", 1)})
    _refused(ctx, 3, TOO_MANY_OPEN_FILES, "too many transfers", caplog)
    assert not (tmp_path / "dl" / "f3").exists()
    ctx.tell("spice.file_xfer_data", {"id": 1, "size": 1, "data": b"x"})
    assert _statuses(ctx, 1, 2)[1]["result"] == XferResult.SUCCESS
    ctx.tell("spice.file_xfer_start", {"id": 4, "data": keyfile("f4", 1)})
    assert _statuses(ctx, 4)[0]["result"] == XferResult.CAN_SEND_DATA


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"data": b"[vdagent-file-xfer]\nname=\xff\xfe.txt\nsize=1\n"}, "START keyfile is not UTF-8"),
        ({"data": b"[vdagent-file-xfer]\nname=a.txt\n"}, "missing or bad size"),
        ({"data": keyfile("a.txt", "-5")}, "missing or bad size"),
        ({"data": keyfile("a.txt", "12abc")}, "missing or bad size"),
        ({"data": b"[other-group]\nname=a.txt\nsize=1\n"}, "missing or bad size"),
        ({"name": "a.txt", "size": -1}, "missing or bad size"),
    ],
    ids=["not-utf8", "no-size", "negative-size", "junk-size", "wrong-group", "negative-size-field"],
)
def test_bad_start_headers_are_invalid_arguments(
    body: dict[str, Any], reason: str, session_ctx: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = _start(session_ctx, tmp_path / "dl")
    ctx.tell("spice.file_xfer_start", {"id": 60, **body})
    _refused(ctx, 60, INVALID_ARGUMENT, reason, caplog)
    assert not (tmp_path / "dl").exists() or list((tmp_path / "dl").iterdir()) == []


def test_start_without_id_is_dropped_without_an_answer(
    session_ctx: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = _start(session_ctx, tmp_path / "dl")
    ctx.tell("spice.file_xfer_start", {"id": "seven", "data": keyfile("a", 1)})
    ctx.tell("spice.file_xfer_start", {"id": 61, "data": keyfile("b", 1)})  # a marker behind it
    _statuses(ctx, 61)
    assert [b["id"] for b in sent(ctx, "file_xfer_status")] == [61]
    assert "file_xfer_start without id" in caplog.text


def test_max_file_size_is_inclusive(session_ctx: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ctx = _start(session_ctx, tmp_path / "dl", max_file_size=100)
    ctx.tell("spice.file_xfer_start", {"id": 70, "data": keyfile("exact", 100)})
    assert _statuses(ctx, 70)[0]["result"] == XferResult.CAN_SEND_DATA
    ctx.tell("spice.file_xfer_start", {"id": 71, "data": keyfile("over", 101)})
    _refused(ctx, 71, NO_SPACE, "file larger than max_file_size", caplog)
    assert not (tmp_path / "dl" / "over").exists()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a\x00b.txt", "name contains control characters"),
        ("\x00", "name contains control characters"),
        ("x" * 256, "name too long"),
        ("é" * 128, "name too long"),  # 256 UTF-8 bytes in 128 characters
        ("a\u200bb", "name contains control characters"),  # zero-width space (Cf)
        (" a", "name starts with a dash or has surrounding blanks"),
    ],
    ids=["nul-inside", "nul-only", "256-bytes", "256-utf8-bytes", "format-char", "leading-blank"],
)
def test_unsafe_names_are_invalid_filenames(
    name: str, reason: str, session_ctx: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = _start(session_ctx, tmp_path / "dl")
    ctx.tell("spice.file_xfer_start", {"id": 80, "name": name, "size": 1})
    _refused(ctx, 80, INVALID_FILENAME, reason, caplog)
    assert not (tmp_path / "dl").exists() or list((tmp_path / "dl").iterdir()) == []


def test_names_of_255_bytes_are_accepted(session_ctx: Any, tmp_path: Path) -> None:
    ctx = _start(session_ctx, tmp_path / "dl")
    for xid, name in ((90, "x" * 255), (91, "é" * 127 + "a")):
        ctx.tell("spice.file_xfer_start", {"id": xid, "name": name, "size": 1})
        assert _statuses(ctx, xid)[0]["result"] == XferResult.CAN_SEND_DATA, name
        ctx.tell("spice.file_xfer_data", {"id": xid, "size": 1, "data": b"z"})
        assert _statuses(ctx, xid, 2)[1]["result"] == XferResult.SUCCESS
        assert (tmp_path / "dl" / name).read_bytes() == b"z"


@pytest.mark.parametrize(
    ("user_dirs", "expected"),
    [
        ('XDG_DOWNLOAD_DIR="$HOME/Téléchargements"\n', "home/Téléchargements"),
        ('XDG_DOWNLOAD_DIR="$HOME/dl=files"\n', "home/dl=files"),  # only the first "=" separates
        ('# a comment\n  XDG_DOWNLOAD_DIR="{tmp}/abs dir"  \n', "abs dir"),
        ('XDG_DOWNLOAD_DIR="Downloads-relative"\n', "home/Downloads"),
        ('XDG_DOWNLOAD_DIR="$HOME"\n', "home/Downloads"),  # the home itself is never the target
        ('XDG_DOWNLOAD_DIR=""\n', "home/Downloads"),
        ('#XDG_DOWNLOAD_DIR="{tmp}/commented"\n', "home/Downloads"),
        ('XDG_DESKTOP_DIR="$HOME/Desktop"\n', "home/Downloads"),
        (None, "home/Downloads"),  # no user-dirs.dirs at all
    ],
    ids=[
        "home-relative",
        "equals-in-path",
        "absolute",
        "relative-ignored",
        "home-ignored",
        "empty",
        "commented",
        "other-key",
        "no-file",
    ],
)
def test_xdg_download_dir_is_parsed_like_xdg_user_dirs(
    user_dirs: str | None, expected: str, session_ctx: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    config = tmp_path / "config"
    config.mkdir(parents=True)
    home.mkdir()
    if user_dirs is not None:
        (config / "user-dirs.dirs").write_text(user_dirs.format(tmp=tmp_path), encoding="utf-8")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    ctx = _start(session_ctx, None)
    ctx.tell("spice.file_xfer_start", {"id": 95, "name": "got.txt", "size": 2})
    assert _statuses(ctx, 95)[0]["result"] == XferResult.CAN_SEND_DATA
    ctx.tell("spice.file_xfer_data", {"id": 95, "size": 2, "data": b"ok"})
    assert _statuses(ctx, 95, 2)[1]["result"] == XferResult.SUCCESS
    target = tmp_path / expected
    assert (target / "got.txt").read_bytes() == b"ok"
    assert target.stat().st_mode & 0o777 == 0o700  # created private
    assert not (home / "got.txt").exists()


@pytest.mark.parametrize("as_text", [False, True], ids=["bytes", "text"])
def test_the_keyfile_ends_at_its_nul(as_text: bool, session_ctx: Any, tmp_path: Path) -> None:
    """Whatever follows the NUL terminator (a second group, bytes that are not UTF-8) is ignored."""
    ctx = _start(session_ctx, tmp_path / "dl")
    good = "[vdagent-file-xfer]\nname=good.txt\nsize=2\n"
    tail = "[vdagent-file-xfer]\nname=evil.txt\nsize=9\n"
    data: str | bytes = good + "\0" + tail if as_text else (good + "\0" + tail).encode() + b"\xff\xfe"
    ctx.tell("spice.file_xfer_start", {"id": 100, "data": data})
    assert _statuses(ctx, 100)[0]["result"] == XferResult.CAN_SEND_DATA
    ctx.tell("spice.file_xfer_data", {"id": 100, "size": 2, "data": b"ok"})
    assert _statuses(ctx, 100, 2)[1]["result"] == XferResult.SUCCESS
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["good.txt"]
    # a keyfile without any NUL (as the gateway may forward it) is read whole
    ctx.tell("spice.file_xfer_start", {"id": 101, "data": "[vdagent-file-xfer]\nname=plain.txt\nsize=1\n"})
    assert _statuses(ctx, 101)[0]["result"] == XferResult.CAN_SEND_DATA


def test_every_alternative_name_taken_is_an_exists_error(
    session_ctx: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dl = tmp_path / "dl"
    dl.mkdir()
    for name in ("a.txt", "a (1).txt", "a (2).txt"):
        (dl / name).write_bytes(b"mine")
    ctx = _start(session_ctx, dl, max_name_tries=2)
    ctx.tell("spice.file_xfer_start", {"id": 110, "name": "a.txt", "size": 1})
    _refused(ctx, 110, 2, "all alternative names exist", caplog)  # G_IO_ERROR_EXISTS
    assert sorted(p.name for p in dl.iterdir()) == ["a (1).txt", "a (2).txt", "a.txt"]
    assert all(p.read_bytes() == b"mine" for p in dl.iterdir())


def test_a_download_dir_that_is_a_file_is_an_error_not_a_crash(
    session_ctx: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "dl").write_text("a file where the directory should be")
    ctx = _start(session_ctx, tmp_path / "dl")
    ctx.tell("spice.file_xfer_start", {"id": 111, "name": "x", "size": 1})
    _refused(ctx, 111, 2, "File exists", caplog)  # mkdir: EEXIST -> G_IO_ERROR_EXISTS
    ctx.tell("spice.file_xfer_start", {"id": 112, "name": "y", "size": 1})  # still answering
    _refused(ctx, 112, 2, "File exists", caplog)


def test_data_for_an_unknown_transfer_is_ignored(session_ctx: Any, tmp_path: Path) -> None:
    ctx = _start(session_ctx, tmp_path / "dl")
    ctx.tell("spice.file_xfer_data", {"id": 999, "size": 1, "data": b"x"})
    ctx.tell("spice.file_xfer_data", {"id": "nope", "size": 1, "data": b"x"})
    ctx.tell("spice.file_xfer_status", {"id": 999, "result": 3})
    ctx.tell("spice.file_xfer_start", {"id": 113, "name": "after", "size": 1})  # a marker behind them
    assert _statuses(ctx, 113)[0]["result"] == XferResult.CAN_SEND_DATA
    assert [b["id"] for b in sent(ctx, "file_xfer_status")] == [113]


def test_bad_settings_are_a_config_error_naming_the_key(session_ctx: Any) -> None:
    from concierge.errors import ConfigError

    ctx: FakeContext = session_ctx("filexfer", {"max_transfers": "many"})
    with pytest.raises(ConfigError, match=r"actors\.filexfer\.settings"):
        ctx.run_node(FileXferNode)


def test_keyfile_comments_and_blank_lines_are_skipped_not_the_end(session_ctx: Any, tmp_path: Path) -> None:
    ctx = _start(session_ctx, tmp_path / "dl")
    data = b"# written by a client\n\n[vdagent-file-xfer]\n\n# the name\nname=c.txt\n\nsize=1\n\0"
    ctx.tell("spice.file_xfer_start", {"id": 120, "data": data})
    assert _statuses(ctx, 120)[0]["result"] == XferResult.CAN_SEND_DATA
    assert (tmp_path / "dl" / "c.txt").exists()


def test_download_dir_without_home_in_the_environment(tmp_path: Path) -> None:
    """No HOME variable: the account's home (pwd), never the current directory."""
    from concierge.actors.filexfer.names import download_dir

    env = {"XDG_CONFIG_HOME": str(tmp_path)}  # no user-dirs.dirs there
    assert download_dir(env) == Path(os.path.expanduser("~")) / "Downloads"
    assert download_dir({**env, "HOME": ""}) == Path(os.path.expanduser("~")) / "Downloads"
    assert download_dir(env, "~/Incoming") == Path(os.path.expanduser("~/Incoming"))

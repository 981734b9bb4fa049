"""Defects the fuzzers found (tools/fuzz), each reproduced as it was found, then fixed.

Every input here also sits in the committed corpus, so the fuzz runner replays it on every CI run.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import msgspec
import pytest

from concierge.actors.session.framing import FrameReader
from concierge.config.loader import load_config
from concierge.errors import ConfigError, ProtocolError
from concierge.transport.qga.lexer import JsonStreamer


def _lex(pieces: list[bytes], **limits: int) -> list[tuple[Any, str | None]]:
    out: list[tuple[Any, str | None]] = []
    streamer = JsonStreamer(lambda value, err: out.append((value, err)), **limits)
    for piece in pieces:
        streamer.feed(piece)
    return out


@pytest.mark.parametrize("run", [b"t" * 51, b"1" * 51, b"-1.5e" + b"7" * 51])
def test_fuzz_qga_oversized_token_cut_the_same_whatever_the_chunking(run: bytes) -> None:
    # Found by fuzz_qga: a keyword/number run longer than the token limit was dropped whole when
    # it arrived in one read but cut at the limit (QEMU checks per character) when split, so
    # the errors a host got depended on how its bytes were split by the port.
    stream = run + b"{\x14\n{{"
    whole = _lex([stream], max_token_size=48)
    bytewise = _lex([stream[i : i + 1] for i in range(len(stream))], max_token_size=48)
    assert whole == bytewise
    assert whole[0] == (None, "JSON token size limit exceeded")


@pytest.mark.parametrize(
    "stream",
    [
        b'"' + b"\\n" * 40 + b'"',  # escapes are lexed a character at a time
        b"-" + b"1" * 46 + b".5e+" + b"7" * 3 + b" ",  # sign, point and exponent likewise
    ],
    ids=["escapes", "number-punctuation"],
)
def test_fuzz_qga_token_limit_is_checked_after_every_character(stream: bytes) -> None:
    # Found by fuzz_qga: characters appended one at a time (escapes, '.', 'e', '+') were not
    # checked against the token limit, so the next run computed a negative room and moved the
    # read position backwards (IndexError, or lexing the same bytes twice). QEMU checks the
    # limit after every character; whole and byte-by-byte feeds must agree.
    whole = _lex([stream], max_token_size=48)
    bytewise = _lex([stream[i : i + 1] for i in range(len(stream))], max_token_size=48)
    assert whole == bytewise
    assert whole[0] == (None, "JSON token size limit exceeded")
    if stream.startswith(b'"'):  # the rest of the escapes is lexed afresh, as QEMU does
        assert whole == [(None, "JSON token size limit exceeded"), (None, "JSON parse error, stray '\\'")]


@pytest.mark.parametrize("blobs", [5, True, 1.5, None])
def test_fuzz_session_frame_with_non_list_blobs_is_a_protocol_error(blobs: object) -> None:
    # Found by fuzz_session: {"x": 5} raised TypeError out of FrameReader.feed (only
    # ProtocolError is handled by the connection code, so a local user could raise in the gateway).
    payload = msgspec.msgpack.encode({"t": "hello", "b": {}, "x": blobs})
    reader = FrameReader()
    if blobs is None:  # absent/None blobs mean "no blobs"
        assert list(reader.feed(struct.pack(">I", len(payload)) + payload)) == [("hello", {}, ())]
        return
    with pytest.raises(ProtocolError):
        list(reader.feed(struct.pack(">I", len(payload)) + payload))


@pytest.mark.parametrize(
    "text",
    [
        b"\xff[agent]\n",
        b"a = " + b"[" * 2000 + b"]" * 2000 + b"\n",
        b"[actors.x.settings]\n" + b"a." * 1500 + b"b = 1\n",
        b"a = " + b"1" * 5000 + b"\n",
    ],
    ids=["not-utf8", "deep-array", "deep-dotted-key", "huge-integer"],
)
def test_fuzz_config_hostile_file_is_a_config_error(tmp_path: Path, text: bytes) -> None:
    # Found by fuzz_config: these escaped load_config as UnicodeDecodeError, RecursionError or
    # ValueError instead of the ConfigError (exit 78, names the file) every caller handles.
    main = tmp_path / "concierge.toml"
    main.write_bytes(text)
    with pytest.raises(ConfigError) as caught:
        load_config(main, tmp_path / "none.d", explicit=True)
    assert str(main) in str(caught.value)

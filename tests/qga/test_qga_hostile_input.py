"""Hostile bytes on the QGA channel, differential against the real qemu-ga.

Each payload is followed on the same connection by an ordinary ``guest-ping``; both agents must
answer the whole exchange with the same bytes (fenced by ``guest-sync-delimited``, see
:func:`fenced_exchange`), so the connection and every reply still pending on it survive, and
the stream stays in step exactly as qemu-ga's does.
"""

from __future__ import annotations

import pytest

from concierge.testing.qga_inproc import Agent
from concierge.testing.qga_peer import QemuGa, fenced_exchange
from concierge.transport.qga.parser import COLON, INTEGER, LCURLY, RCURLY, STRING, parse_tokens

FOLLOW = b'{"execute":"guest-ping","id":"after"}\n'
AFTER = b'{"return": {}, "id": "after"}\n'
DIGITS = b"1" * 4400  # over CPython's 4,300-digit int() limit

CASES = {
    "huge-id": b'{"execute":"guest-ping","id":' + DIGITS + b"}",
    "huge-negative-id": b'{"execute":"guest-ping","id":-' + DIGITS + b"}",
    "huge-id-in-list": b'{"execute":"guest-ping","id":[1,' + DIGITS + b"]}",
    "huge-sync-id": b'{"execute":"guest-sync","arguments":{"id":' + DIGITS + b"}}",
    "huge-argument": b'{"execute":"guest-file-read","arguments":{"handle":' + DIGITS + b"}}",
    "huge-id-after-slow-path": b'{"execute":"guest-ping","id":"\\u00e9","x":' + DIGITS + b"}",
    "100k-brackets": b"[" * 100_000 + b"\n",
    "100k-brackets-in-id": b'{"execute":"guest-ping","id":' + b"[" * 100_000 + b"\n",
    "100k-braces": b"{" * 100_000 + b"\n",
    "deepest-id-allowed": b'{"execute":"guest-ping","id":' + b"[" * 1023 + b"]" * 1023 + b"}",
}
# where qemu-ga answers the following ping (it does not after an unbalanced bracket flood: the
# ping is swallowed by the still-open nesting, then the 0xFF fence resets the parser)
ANSWERED = {"huge-id", "huge-negative-id", "huge-id-in-list", "huge-sync-id", "huge-argument"}


@pytest.mark.peer
@pytest.mark.parametrize("name", list(CASES))
def test_hostile_request_then_ping_matches_qemu_ga(name: str, qemu_ga: QemuGa, agent: Agent) -> None:
    payload = CASES[name] + FOLLOW
    theirs = fenced_exchange(qemu_ga.socket_path, payload)
    ours = fenced_exchange(agent.socket_path, payload)
    assert ours == theirs
    if name in ANSWERED:
        assert AFTER in ours
    assert agent.ctx.counters.get("host.frontend_crashes", 0) == 0


@pytest.mark.peer
def test_huge_id_answers_inf_like_qemu_ga(qemu_ga: QemuGa, agent: Agent) -> None:
    payload = CASES["huge-id"] + FOLLOW
    ours = fenced_exchange(agent.socket_path, payload)
    assert b'{"return": {}, "id": inf}\n' + AFTER in ours
    assert ours == fenced_exchange(qemu_ga.socket_path, payload)


def test_parser_turns_an_integer_beyond_int64_into_a_double_without_int() -> None:
    tokens = [(LCURLY, b"{"), (STRING, b'"a"'), (COLON, b":"), (INTEGER, b"9" * 5000), (RCURLY, b"}")]
    assert parse_tokens(tokens) == {"a": float("inf")}

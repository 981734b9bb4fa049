"""Session gateway: every message type with every field wrong, sent by a real local user.

The gateway runs in a real ``concierge run`` (its own actor process under the supervisor); the
attacker is a useradd account under setpriv. Every malformed frame must get its connection a
``reject`` and a close, the actor must never exit or restart, and another user's session agent,
connected throughout, must still be served afterwards.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from spice_gwclient import UID_B, Client, gateway_agent, hello
from spice_testkit import wait_for

from concierge.actors.session import framing
from concierge.errors import ProtocolError
from concierge.testing.harness import AgentHarness
from concierge.testing.localuser import as_user, local_user

HOSTILE = Path(__file__).with_name("spice_hostile_client.py")
GEOMETRY = {"monitors": [{"x": 0, "y": 0, "width": 1280, "height": 800, "display_id": 0}]}

# field kinds -> values of the wrong type or out of range for that kind
_NOT_INT: list[Any] = ["x", 1.5, None, [], {}, True, b"x", [1], {"a": 1}]
WRONG: dict[str, list[Any]] = {
    "u8": [*_NOT_INT, -1, 256, 2**40],
    "u32": [*_NOT_INT, -1, 2**32, 2**63],
    "i32": [*_NOT_INT, 2**31, -(2**31) - 1, 2**63],
    "opt_i32": ["x", 1.5, [], {}, True, b"x", 2**40],
    "str": [1, 1.5, None, [], {}, True, b"x", "x" * 300],
    "bytes": [1, 1.5, None, [], {}, True, "not base64!"],
    "u32_list": ["x", 1, None, {}, ["x"], [-1], [None], list(range(65))],
}
# (frame type, valid body, field -> kind, optional fields)
MONITOR = {"x": "i32", "y": "i32", "width": "u32", "height": "u32", "display_id": "u32"}
SCHEMAS: list[tuple[str, dict[str, Any], dict[str, str], set[str]]] = [
    (
        "hello",
        {"version": 1, "display": ":0", "uid": 0},
        {"version": "u32", "display": "str", "uid": "opt_i32"},
        {"uid"},
    ),
]
SENDS: list[tuple[str, dict[str, Any], dict[str, str], set[str]]] = [
    ("reply", {"type": 2, "error": 1}, {"type": "u32", "error": "u32"}, set()),
    ("clipboard", {"selection": 0, "type": 1}, {"selection": "u8", "type": "u32"}, {"selection"}),
    (
        "clipboard_grab",
        {"selection": 0, "serial": 0, "types": [1]},
        {"selection": "u8", "serial": "u32", "types": "u32_list"},
        {"selection", "serial"},
    ),
    ("clipboard_request", {"selection": 0, "type": 1}, {"selection": "u8", "type": "u32"}, {"selection"}),
    ("clipboard_release", {"selection": 0}, {"selection": "u8"}, {"selection"}),
    (
        "file_xfer_status",
        {"id": 1, "result": 2, "data": b""},
        {"id": "u32", "result": "u32", "data": "bytes"},
        {"data"},
    ),
]
NOT_A_MAP: list[Any] = [None, 1, "x", [], [1, 2], b"x", True]


def _variants(valid: dict[str, Any], kinds: dict[str, str], optional: set[str]) -> Iterator[Any]:
    """Every field wrong in every way, every required field missing, an extra field, no map."""
    for field, kind in kinds.items():
        for wrong in WRONG[kind]:
            yield {**valid, field: wrong}
        if field not in optional:
            yield {k: v for k, v in valid.items() if k != field}
    yield {**valid, "extra": 1}
    yield from NOT_A_MAP


def hostile_cases() -> list[list[bytes]]:
    """Frame sequences; each must end with the connection rejected."""
    first = framing.encode("hello", {"version": 1, "display": ":0"})
    cases: list[list[bytes]] = []
    for type_, valid, kinds, optional in SCHEMAS:
        cases += [[framing.encode(type_, body)] for body in _variants(valid, kinds, optional)]
    monitor = GEOMETRY["monitors"][0]
    for body in _variants(monitor, MONITOR, set()):
        cases.append([first, framing.encode("geometry", {"monitors": [body]})])
    for body in [*NOT_A_MAP, {}, {"monitors": [monitor] * 65}, {"monitors": "x"}, {**GEOMETRY, "extra": 1}]:
        cases.append([first, framing.encode("geometry", body)])
    for kind, valid, kinds, optional in SENDS:
        for body in _variants(valid, kinds, optional):
            cases.append([first, framing.encode("spice.send", {"type": kind, "body": body})])
        cases.append([first, framing.encode("spice.send", {"type": kind})])
        cases.append([first, framing.encode("spice.send", {"type": kind, "body": valid, "x": 1})])
    for outer in [*NOT_A_MAP, {}, {"type": 5, "body": {}}, {"type": "monitors_config", "body": {}}]:
        cases.append([first, framing.encode("spice.send", outer)])
    # the report of the issue, verbatim
    cases.append([first, framing.encode("spice.send", {"type": "clipboard_request", "body": {"selection": "x"}})])
    # frames that are not frames
    enc = framing._enc
    for raw in [
        b"\x00\x00\x00\x03abc",
        enc.encode([1, 2, 3]),
        enc.encode({"t": 5, "b": None, "x": []}),
        enc.encode({"t": "spice.send", "b": None, "x": ["not bytes"]}),
        enc.encode({"t": "spice.send", "b": None, "x": 7}),
        enc.encode({"b": None}),
        b"\x91" * 10_000 + b"\xc0",  # nesting 10,000 deep
    ]:
        frame = raw if raw.startswith(b"\x00\x00") else framing._LEN.pack(len(raw)) + raw
        cases.append([first, frame])
    cases.append([framing._LEN.pack(2**32 - 1)])
    cases.append([framing.encode("geometry", GEOMETRY)])  # before hello
    return cases


@pytest.fixture
def attacker() -> Iterator[tuple[str, int, int]]:
    with local_user() as account:
        yield account


def _run_attack(agent: AgentHarness, uid: int, gid: int, cases: list[list[bytes]]) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="cc-gw-hostile-", dir=agent.root))
    work.chmod(0o777)
    casefile, outfile = work / "cases", work / "out"
    casefile.write_text("".join(" ".join(f.hex() for f in case) + "\n" for case in cases))
    casefile.chmod(0o644)
    sock = agent.runtime_dir / "users" / str(uid) / "session.sock"
    argv = as_user(uid, gid, "/usr/bin/python3", str(HOSTILE), str(sock), str(casefile), str(outfile))
    subprocess.run(argv, check=True, timeout=600)
    return outfile.read_text().splitlines()


def test_spice_every_malformed_frame_is_refused_and_others_keep_working(attacker: tuple[str, int, int]) -> None:
    _, uid, gid = attacker
    with gateway_agent([uid, UID_B], hello_timeout_s=30.0) as agent:
        pid = agent.actor("session")["pid"]
        other = Client(agent.runtime_dir, UID_B, UID_B, "hold", hello(), framing.encode("geometry", GEOMETRY))
        try:
            assert other.wait_frame("welcome")["uid"] == UID_B
            cases = hostile_cases()
            outcomes = _run_attack(agent, uid, gid, cases)
            assert len(outcomes) == len(cases)
            for case, outcome in zip(cases, outcomes, strict=True):
                assert outcome.startswith("CLOSED"), (case, outcome)
                assert _types(outcome)[-1:] == ["reject"], (case, outcome)
            status = agent.actor("session")
            assert (status["pid"], status["restarts"], status["state"]) == (pid, 0, "RUNNING")
            assert status["counters"].get("session.callback_failed", 0) == 0
            assert status["counters"].get("session.conn_failed", 0) == 0
            # the other user was served throughout and still is
            paste = framing.encode("spice.send", {"type": "clipboard_request", "body": {"selection": 0, "type": 1}})
            late = Client(agent.runtime_dir, UID_B, UID_B, "plain", hello())
            try:
                assert "already has an agent" in late.wait_frame("reject")["reason"]
            finally:
                late.stop()
            assert other.proc.poll() is None and "EOF" not in other.lines()
            second = Client(agent.runtime_dir, uid, uid, "hold", hello(), paste)
            try:  # a well-behaved agent of the attacker's uid is still welcomed
                assert second.wait_frame("welcome")["uid"] == uid
                assert second.wait_frame("spice.clipboard") == {"selection": 0, "type": 0}
            finally:
                second.stop()
            wait_for(lambda: agent.actor("session")["detail"].startswith("active uid-"))
        finally:
            other.stop()


def test_spice_bad_selection_from_inactive_session_does_not_kill_gateway(attacker: tuple[str, int, int]) -> None:
    """The report: six of these left ``session`` FATAL for every user (each one exited 70)."""
    _, uid, gid = attacker
    bad = framing.encode("spice.send", {"type": "clipboard_request", "body": {"selection": "x"}})
    with gateway_agent([uid, UID_B]) as agent:
        pid = agent.actor("session")["pid"]
        other = Client(agent.runtime_dir, UID_B, UID_B, "hold", hello(), framing.encode("geometry", GEOMETRY))
        try:
            other.wait_frame("welcome")
            first = framing.encode("hello", {"version": 1, "display": ":0"})
            outcomes = _run_attack(agent, uid, gid, [[first, bad]] * 6)
            status = agent.actor("session")
            assert (status["pid"], status["restarts"], status["state"]) == (pid, 0, "RUNNING"), status
            assert all(o.startswith("CLOSED") and _types(o)[-1:] == ["reject"] for o in outcomes), outcomes
            assert other.proc.poll() is None and "EOF" not in other.lines()
        finally:
            other.stop()


def _types(outcome: str) -> list[str]:
    return [t for t, _ in _frames(outcome.split(" ", 1)[1])]


def _frames(hexdata: str) -> list[tuple[str, Any]]:
    return [(t, b) for t, b, _ in framing.FrameReader().feed(bytes.fromhex(hexdata))]


def test_spice_hostile_cases_cover_every_message_type() -> None:
    seen: set[str] = set()
    for case in hostile_cases():
        with contextlib.suppress(ProtocolError):
            for type_, body, _ in framing.FrameReader().feed(case[-1]):
                seen.add(type_)
                if type_ == "spice.send" and isinstance(body, dict) and isinstance(body.get("type"), str):
                    seen.add(body["type"])
    assert {"hello", "geometry", "spice.send"} | {kind for kind, *_ in SENDS} <= seen

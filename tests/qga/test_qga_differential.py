"""Byte-for-byte differential tests: the same raw bytes to the real qemu-ga and to Concierge."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from concierge.testing.qga_inproc import Agent
from concierge.testing.qga_peer import QemuGa, RawClient, fenced_exchange


def exchange(path: Path, payload: bytes) -> bytes:
    """All reply bytes for ``payload`` (fenced by guest-sync-delimited on both sides)."""
    return fenced_exchange(path, payload)


PROTOCOL_CASES = [
    b'{"execute":"guest-ping"}',
    b'{"execute":"guest-ping"}\n{"execute":"guest-ping","id":1}{"execute":"guest-ping","id":"x"}',
    b'{"execute":"guest-ping","id":null}',
    b'{"execute":"guest-ping","id":1.5}',
    b'{"execute":"guest-ping","id":0.1}',
    b'{"execute":"guest-ping","id":true}',
    b'{"execute":"guest-ping","id":false}',
    b'{"execute":"guest-ping","id":[1,{"a":null,"b":[]}]}',
    b'{"execute":"guest-ping","id":{"b":1,"a":2,"return":3,"id":4,"error":5,"class":6,"desc":7}}',
    b'{"execute":"guest-ping","id":1e3}',
    b'{"execute":"guest-ping","id":-0}',
    b'{"execute":"guest-ping","id":-0.0}',
    b'{"execute":"guest-ping","id":1e400}',
    b'{"execute":"guest-ping","id":123456789012345678901234567890}',
    b'{"execute":"guest-ping","id":18446744073709551615}',
    b'{"execute":"guest-ping","id":-9223372036854775809}',
    b'{"execute":"guest-ping","id":"\\u00e9\\ud83d\\ude00\\u007f\\u0000/\\\'\\"\\\\\\b\\f\\n\\r\\t"}',
    b'{"execute":"guest-ping","id":"caf\xc3\xa9 \xf0\x9f\x98\x80 \x7f"}',
    b'{"execute":"guest-ping","id":"\xc0\x80"}',
    b'{"execute":"guest-ping","id":"\xef\xbf\xbe"}',
    b'{"execute":"guest-ping","id":"\xed\xa0\x80"}',
    b'{"execute":"guest-ping","id":"\xc3"}',
    b'{"execute":"guest-ping","id":"\\uffff"}',
    b'{"execute":"guest-ping","id":"\\ud800x"}',
    b'{"execute":"guest-ping","id":"\\u12"}',
    b'{"execute":"guest-ping","id":"\\x"}',
    b'{"execute":"guest-ping","id":"a\x01b"}',
    b"{'execute':'guest-ping','id':'single \"quoted\"'}",
    b'{"execute":"guest-sync","arguments":{"id":5}}',
    b'{"execute":"guest-sync","arguments":{"id":-5},"id":"s"}',
    b'{"execute":"guest-sync","arguments":{"id":9223372036854775807}}',
    b'{"execute":"guest-sync","arguments":{"id":-9223372036854775808}}',
    b'{"execute":"guest-sync","arguments":{"id":18446744073709551615}}',
    b'{"execute":"guest-sync","arguments":{"id":"5"}}',
    b'{"execute":"guest-sync","arguments":{"id":5.0}}',
    b'{"execute":"guest-sync","arguments":{"id":5,"x":1}}',
    b'{"execute":"guest-sync","arguments":{}}',
    b'{"execute":"guest-sync"}',
    b'{"execute":"guest-sync","arguments":[]}',
    b'{"execute":"guest-sync","arguments":null}',
    b'{"execute":"guest-sync-delimited","arguments":{"id":7}}',
    b'{"execute":"guest-sync-delimited","arguments":{"id":"x"}}',
    b'{"execute":"guest-ping","arguments":{"x":1,"y":2}}',
    b'{"execute":"guest-ping","arguments":{"x":1,"y":2,"z":3,"a":4,"b":5,"c":6,"d":7,"e":8,"f":9}}',
    b'{"execute":"guest-ping","arguments":{}}',
    b'{"execute":"guest-nope"}',
    b'{"execute":"guest-nope","id":3}',
    b'{"execute":"guest-get-devices"}',
    b'{"execute":5}',
    b'{"execute":5,"id":[1]}',
    b'{"id":1}',
    b'{"execute":"guest-ping","foo":1,"id":"f"}',
    b'{"execute":"guest-sync","arguments":5,"id":{"a":1}}',
    b'{"execute":"guest-nope","id":3,"arguments":{"x":1}}',
    b'{"execute":"guest-ping","foo":1}',
    b'{"execute":"guest-ping","a":1,"b":2,"c":3}',
    b'{"b":1,"a":2}',
    b'{"foo":1}',
    b"{}",
    b"[1,2]",
    b"5",
    b'"str"',
    b"hello",
    b"TRUE",
    b"nul",
    b"%d",
    b'{"execute":"guest-ping"',
    b'{"execute":"guest-get-time",\xff{"execute":"guest-ping"}',
    b'{"execute":"guest-ping"}}',
    b"]",
    b"}{",
    b"{]",
    b'{"a" "b"}',
    b'{"a":1 "b":2}',
    b"[1 2]",
    b'{"a":}',
    b"{1:2}",
    b'{"execute":"guest-ping","execute":"guest-ping"}',
    b'{"execute":"guest-ping","exec-oob":"x"}',
    b'{"exec-oob":"guest-ping"}',
    b'{"execute":"guest-ping","id":[01]}',
    b'{"execute":"guest-ping","id":-}',
    b'{"execute":"guest-ping","id":1.}',
    b'{"execute":"guest-ping","id":1e}',
    b'{"execute":"guest-ping"}\x00{"execute":"guest-ping"}',
    b'{"execute":"guest-ping","id":1}\xff\xff\xff',
    b'\xfe\xfd{"execute":"guest-ping"}',
    b'  \t\r\n {"execute" : "guest-ping" , "id" : [ ] } \n',
    b"[" * 1100 + b"]" * 1100,
    b'{"a":' * 600 + b"1" + b"}" * 600,
    b'{"execute":"guest-ping","id":' + b"[" * 1000 + b"]" * 1000 + b"}",
]

ARGUMENT_CASES = [
    b'{"execute":"guest-file-seek","arguments":{"handle":1,"offset":0,"whence":"bogus"}}',
    b'{"execute":"guest-file-seek","arguments":{"handle":1,"offset":0,"whence":true}}',
    b'{"execute":"guest-file-seek","arguments":{"handle":1,"offset":0,"whence":1.5}}',
    b'{"execute":"guest-file-seek","arguments":{"handle":1,"offset":0}}',
    b'{"execute":"guest-file-seek","arguments":{"handle":"1","offset":0,"whence":0}}',
    b'{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":"a","online":true}]}}',
    b'{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"online":true}]}}',
    b'{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":1,"online":true,"zz":1}]}}',
    b'{"execute":"guest-set-vcpus","arguments":{"vcpus":{}}}',
    b'{"execute":"guest-set-vcpus","arguments":{"vcpus":[5]}}',
    b'{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":1,"online":1}]}}',
    b'{"execute":"guest-set-vcpus","arguments":{}}',
    b'{"execute":"guest-exec","arguments":{"path":"/bin/true","arg":[1]}}',
    b'{"execute":"guest-exec","arguments":{"path":"/bin/true","arg":"x"}}',
    b'{"execute":"guest-exec","arguments":{"path":"/bin/true","env":[null]}}',
    b'{"execute":"guest-exec","arguments":{"x":1}}',
    b'{"execute":"guest-exec","arguments":{"path":7}}',
    b'{"execute":"guest-set-memory-blocks","arguments":{"mem-blks":[{"phys-index":"x","online":true}]}}',
    b'{"execute":"guest-set-memory-blocks","arguments":{"mem-blks":[{"phys-index":1.5,"online":true}]}}',
    b'{"execute":"guest-set-memory-blocks","arguments":{"mem-blks":[{"phys-index":1}]}}',
    b'{"execute":"guest-shutdown","arguments":{"mode":5}}',
    b'{"execute":"guest-shutdown","arguments":{"mode":"halt","x":1}}',
    b'{"execute":"guest-file-read","arguments":{"handle":1,"count":1.5}}',
    b'{"execute":"guest-file-open","arguments":{}}',
    b'{"execute":"guest-file-write","arguments":{"handle":1,"buf-b64":5}}',
    b'{"execute":"guest-set-time","arguments":{"time":null}}',
    b'{"execute":"guest-set-time","arguments":{"time":"now"}}',
    b'{"execute":"guest-set-user-password","arguments":{"username":"x","password":"eA==","crypted":"no"}}',
    b'{"execute":"guest-set-user-password","arguments":{"username":"x","password":"eA=="}}',
    b'{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"x"}}',
    b'{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"x","keys":["k"],"reset":0}}',
    b'{"execute":"guest-ssh-remove-authorized-keys","arguments":{"username":"x","keys":"k"}}',
    b'{"execute":"guest-ssh-get-authorized-keys","arguments":{"user":"x"}}',
    b'{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":[1]}}',
    b'{"execute":"guest-fstrim","arguments":{"minimum":"1"}}',
    b'{"execute":"guest-exec-status","arguments":{"pid":true}}',
    b'{"execute":"guest-get-osinfo","arguments":{"verbose":true}}',
    b'{"execute":"guest-info","arguments":{"x":1}}',
    b'{"execute":"guest-get-fsinfo","arguments":{"x":1},"id":{"k":[1]}}',
    b'{"execute":"guest-file-close","arguments":{"handle":1,"a":1,"b":2}}',
]


@pytest.mark.peer
@pytest.mark.parametrize("payload", PROTOCOL_CASES + ARGUMENT_CASES, ids=lambda p: repr(p[:60]))
def test_same_bytes_as_qemu_ga(payload: bytes, qemu_ga: QemuGa, agent: Agent) -> None:
    theirs = exchange(qemu_ga.socket_path, payload)
    ours = exchange(agent.socket_path, payload)
    assert ours == theirs


@pytest.mark.peer
def test_split_byte_by_byte_gives_the_same_answers(qemu_ga: QemuGa, agent: Agent) -> None:
    payload = b'{"execute":"guest-sync","arguments":{"id":42},"id":"\xc3\xa9"}{"execute":"guest-nope"}'
    theirs = exchange(qemu_ga.socket_path, payload)
    with RawClient(agent.socket_path) as client:
        for byte in payload:
            client.send(bytes((byte,)))
        assert client.read_lines(2) == theirs.splitlines(keepends=True)[:2]


@pytest.mark.peer
def test_huge_id_is_echoed(qemu_ga: QemuGa, agent: Agent) -> None:
    big = b"x" * (2 << 20)
    payload = b'{"execute":"guest-ping","id":"' + big + b'"}'
    assert exchange(agent.socket_path, payload) == exchange(qemu_ga.socket_path, payload)


FRAGMENTS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b'"execute"',
    b'"guest-ping"',
    b'"guest-sync"',
    b'"guest-nope"',
    b'"arguments"',
    b'"id"',
    b"1",
    b"-",
    b"0",
    b"1.5",
    b"e",
    b'"x"',
    b"'y'",
    b"true",
    b"nul",
    b"\xff",
    b"\x00",
    b"\\",
    b'"',
    b" ",
    b"\n",
    b"\xc3",
    b"\xa9",
    b"%",
    b"\x01",
]


@pytest.mark.peer
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40))
def test_random_fragment_streams_match_qemu_ga(qemu_ga: QemuGa, agent: Agent, parts: list[bytes]) -> None:
    payload = b"".join(parts)
    assert exchange(agent.socket_path, payload) == exchange(qemu_ga.socket_path, payload)

"""Codec and vdsm-reader behaviour: filtering, escaping, line limit, resynchronisation."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from concierge.testing.vdsm_host import VdsmHost
from concierge.transport.ovirt.codec import MAX_LINE, Garbage, LineReader, Message, encode


def test_encode_ascii_filtered_newline() -> None:
    line = encode("host-name", {"name": "x\x07y\ud800z\u00e9", "k\x01": ["\x7f"]})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert all(b < 0x80 for b in line)
    obj = json.loads(line)
    assert obj == {"name": "x\ufffdy\ufffdz\u00e9", "k\ufffd": ["\ufffd"], "__name__": "host-name"}


def test_encode_refuses_oversize() -> None:
    try:
        encode("applications", {"applications": ["a" * MAX_LINE]})
    except ValueError as err:
        assert "1 MiB" in str(err)
    else:
        raise AssertionError("oversize line accepted")


@given(st.lists(st.text(max_size=30), max_size=5), st.integers(min_value=1, max_value=50))
def test_reader_any_split(values: list[str], step: int) -> None:
    data = b"".join(encode("echo", {"v": v}) for v in values)
    reader = LineReader()
    out: list[Any] = []
    for i in range(0, len(data), step):
        out.extend(reader.feed(data[i : i + step]))
    assert [m.args["v"] for m in out if isinstance(m, Message)] == [
        json.loads(encode("x", {"v": v}))["v"] for v in values
    ]


def test_reader_drops_long_line_and_resyncs() -> None:
    reader = LineReader(max_line=100)
    items = list(reader.feed(b"a" * 150))
    items += list(reader.feed(b"b" * 50 + b'\n{"__name__": "echo"}\n'))
    assert isinstance(items[0], Garbage) and items[0].size == 200
    assert items[1] == Message("echo", {})


def test_vdsm_missing_field_loses_rest_of_chunk() -> None:
    host = VdsmHost()
    host.chunk(b'{"__name__": "heartbeat"}\n{"__name__": "host-name", "name": "a"}\n')
    assert host.exceptions and host.state.guest_name == ""
    host.chunk(b'garbage\n{"__name__": "host-name", "name": "b"}\n')
    assert host.state.guest_name == "b" and host.errors


def test_vdsm_responsiveness_and_negotiation() -> None:
    now = [0.0]
    host = VdsmHost(clock=lambda: now[0], api_version=3)
    assert not host.is_responsive()
    host.chunk(encode("heartbeat", {"free-ram": "5", "apiVersion": 0}))
    host.chunk(encode("heartbeat", {"free-ram": "5", "apiVersion": 3}))
    assert host.effective_api_version == 3
    assert host.take_outbox() == b'{"apiVersion": 3, "__name__": "api-version"}\n'
    now[0] = 119.0
    assert host.is_responsive()
    now[0] = 121.0
    assert not host.is_responsive()


def test_vdsm_too_big_line() -> None:
    host = VdsmHost()
    host.feed(b"x" * (1024 * 1024 + 70000) + b'\n{"__name__": "fqdn", "fqdn": "f"}\n')
    assert host.warnings and host.state.fqdn == "f"


def test_bad_settings_are_config_errors(tmp_path: Any) -> None:
    import pytest

    from concierge.actors.sso.node import SsoNode
    from concierge.errors import ConfigError
    from concierge.testing.context import FakeContext
    from concierge.transport.ovirt.settings import load_settings

    with pytest.raises(ConfigError, match=r"actors\.transport\.settings\.ovirt"):
        load_settings({"heartbeat": 5})
    ctx = FakeContext("sso", {"credential_ttl": 5}, runtime_dir=tmp_path)
    try:
        with pytest.raises(ConfigError, match=r"actors\.sso\.settings"):
            ctx.run_node(SsoNode)
    finally:
        ctx.close()

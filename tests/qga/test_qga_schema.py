"""The hand-written argument table against the upstream QAPI schema, and reply conformance."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from concierge.testing.qapi import check_value, load_schema
from concierge.testing.qga_inproc import Agent
from concierge.testing.qga_peer import RawClient
from concierge.testing.reference import reference_file
from concierge.transport.qga import argspec


@pytest.fixture(scope="module")
def schema() -> dict[str, dict[str, Any]]:
    return load_schema(reference_file("qga-qapi-schema.json"))


def _kind(schema: dict[str, dict[str, Any]], type_name: str) -> str:
    if type_name in ("int", "int64", "uint64"):
        return "int"
    if type_name == "bool":
        return "bool"
    return "str"  # str and enums


def _same_type(schema: dict[str, dict[str, Any]], ours: Any, theirs: Any) -> None:
    if isinstance(theirs, list):
        assert isinstance(ours, list)
        _same_type(schema, ours[0], theirs[0])
        return
    assert ours == theirs
    definition = schema.get(theirs)
    if definition is None:
        return
    if definition["meta"] == "struct":
        _same_members(schema, argspec.STRUCTS[ours], definition["data"])
    elif definition["meta"] == "enum":
        values = tuple(v["name"] if isinstance(v, dict) else v for v in definition["data"])
        assert argspec.ENUMS[ours] == values
    elif definition["meta"] == "alternate":
        branches = {_kind(schema, t): t for t in definition["data"].values()}
        assert argspec.ALTERNATES[ours] == branches
        for kind, branch in branches.items():
            _same_type(schema, argspec.ALTERNATES[ours][kind], branch)


def _same_members(schema: dict[str, dict[str, Any]], ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert list(ours) == list(theirs)
    for name, type_ in theirs.items():
        _same_type(schema, ours[name], type_)


def test_every_linux_command_and_its_arguments(schema: dict[str, dict[str, Any]]) -> None:
    commands = {name: d for name, d in schema.items() if d["meta"] == "command"}
    linux = {name for name, d in commands.items() if d.get("if") != "CONFIG_WIN32"}
    assert set(argspec.LINUX_COMMANDS) == linux
    assert len(argspec.LINUX_COMMANDS) == 43
    for name in linux:
        spec = argspec.BY_NAME[name]
        _same_members(schema, spec.args, commands[name].get("data", {}))
        assert spec.success_response == commands[name].get("success-response", True), name


def test_protocol_replies_conform(schema: dict[str, dict[str, Any]], agent: Agent) -> None:
    with RawClient(agent.socket_path) as client:
        info = json.loads(client.exchange(b'{"execute":"guest-info"}')[0])["return"]
        sync = json.loads(client.exchange(b'{"execute":"guest-sync","arguments":{"id":-3}}')[0])
        ping = json.loads(client.exchange(b'{"execute":"guest-ping"}')[0])
    assert check_value(schema, "GuestAgentInfo", info) == []
    assert check_value(schema, "int", sync["return"]) == []
    assert ping == {"return": {}}
    assert check_value(schema, "GuestAgentInfo", {"version": 1, "x": 2}) != []


def test_guest_info_version_is_the_schema_release_implemented() -> None:
    """guest-info said "0.1.0" (Concierge's own version): a client comparing qemu-ga versions
    took it for an agent older than any qemu-ga (issue 15 item 9). It is the QEMU release of
    the newest command implemented."""
    from concierge.transport.qga.settings import QGA_SCHEMA_RELEASE, QgaSettings

    newest = max(
        tuple(int(part) for part in since.split("."))
        for since in re.findall(r"Since: (\d+\.\d+)", reference_file("qga-qapi-schema.json").read_text())
    )
    assert QgaSettings().version == QGA_SCHEMA_RELEASE
    assert tuple(int(part) for part in QGA_SCHEMA_RELEASE.split(".")[:2]) == newest

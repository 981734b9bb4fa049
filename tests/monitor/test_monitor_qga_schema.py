"""Every monitor QGA rendering conforms to the upstream QAPI schema (qemu master), including
the commands the local qemu-ga 7.2 lacks (guest-network-get-route, guest-get-load)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from monitor_peers import monitor_node

from concierge.testing import qapi
from concierge.testing.reference import reference_file
from concierge.transport.qga.commands.monitor import ROUTES, qdict_order, tdb_hash

_INTS = {"int", "uint64", "int64", "uint16", "uint32", "int32", "uint8", "int8", "size"}


def load_schema(path: Path) -> dict[str, dict[str, Any]]:
    """QAPI definitions by name, each with its ``kind`` (struct, union, enum, command ...)."""
    return {name: {"kind": d["meta"], **d} for name, d in qapi.load_schema(path).items()}


def _members(data: dict[str, Any]) -> dict[str, tuple[Any, bool]]:
    out = {}
    for name, spec in data.items():
        typ = spec["type"] if isinstance(spec, dict) else spec
        out[name.lstrip("*")] = (typ, not name.startswith("*"))
    return out


def check(defs: dict[str, dict[str, Any]], typ: Any, value: Any, where: str) -> None:
    if isinstance(typ, list):
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            check(defs, typ[0], item, f"{where}[{i}]")
        return
    if typ in _INTS:
        assert isinstance(value, int) and not isinstance(value, bool), (where, value)
        return
    if typ == "number":
        assert isinstance(value, int | float) and not isinstance(value, bool), where
        return
    if typ == "str":
        assert isinstance(value, str), (where, value)
        return
    if typ == "bool":
        assert isinstance(value, bool), where
        return
    spec = defs[typ]
    if spec["kind"] == "enum":
        names = [m["name"] if isinstance(m, dict) else m for m in spec["data"]]
        assert value in names, (where, value)
        return
    assert isinstance(value, dict), where
    members: dict[str, tuple[Any, bool]] = {}
    base = spec.get("base")
    if isinstance(base, dict):
        members.update(_members(base))
    elif isinstance(base, str):
        members.update(_members(defs[base]["data"]))
    if spec["kind"] == "union":
        branch = spec["data"][value[spec["discriminator"]]]
        branch = branch["type"] if isinstance(branch, dict) else branch
        members.update(_members(defs[branch]["data"]))
    else:
        members.update(_members(spec["data"]))
    assert set(value) <= set(members), (where, set(value) - set(members))
    for name, (mtype, required) in members.items():
        if required:
            assert name in value, (where, name)
        if name in value:
            check(defs, mtype, value[name], f"{where}.{name}")


@pytest.fixture(scope="module")
def schema() -> dict[str, dict[str, Any]]:
    return load_schema(reference_file("qga-qapi-schema.json"))


@pytest.fixture(scope="module")
def node_ctx() -> Any:
    with monitor_node({"logind_bus": "none"}) as ctx:
        yield ctx


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.command)
def test_rendering_conforms_to_schema(schema: dict[str, dict[str, Any]], node_ctx: Any, route: Any) -> None:
    reply = node_ctx.ask(route.request, route.to_request({}))
    assert reply.ok, reply
    rendered = json.loads(json.dumps(route.render(reply.body)))
    command = schema[route.command]
    check(schema, command["returns"], rendered, route.command)


def test_qdict_order_reproduces_recorded_qemu_ga_output() -> None:
    recorded = (
        '{"name": "vda", "total-bytes": 1, "mountpoint": "/", "disk": [{"bus-type": '
        '"virtio", "bus": 0, "unit": 0, "pci-controller": {"bus": 0, "slot": 2, '
        '"domain": 0, "function": 0}, "dev": "/dev/vda", "target": 0}], '
        '"used-bytes": 2, "type": "ext4"}'
    )
    value = json.loads(recorded)
    shuffled = dict(sorted(value.items()))
    assert json.dumps(qdict_order(shuffled)) == recorded
    assert tdb_hash("name") % 512 < tdb_hash("type") % 512

"""QGA routes served by the monitor actor, rendering its answers to qemu-ga's exact shapes.

qemu-ga serialises every object from a QDict, whose iteration order is fixed by the key hash
(``tdb_hash`` modulo 512 buckets, newest first within a bucket); :func:`qdict_order` rebuilds
that order so our JSON is byte-compatible with the real agent's, not merely equivalent.
Interfaces are requested with the ``qga`` profile (every interface unless configured).
"""

from __future__ import annotations

from typing import Any

from concierge.netdev import read_net_dev
from concierge.transport.qga.commands.registry import QgaRoute

_BUCKETS = 512


def tdb_hash(key: str) -> int:
    """The string hash QEMU's QDict uses to pick a bucket."""
    raw = key.encode()
    value = (0x238F13AF * len(raw)) & 0xFFFFFFFF
    for i, byte in enumerate(raw):
        value = (value + (byte << (i * 5 % 24))) & 0xFFFFFFFF
    return (1103515243 * value + 12345) & 0xFFFFFFFF


def _key_order(keys: tuple[str, ...]) -> tuple[str, ...]:
    order = _ORDERS.get(keys)
    if order is None:
        buckets: dict[int, list[str]] = {}
        for key in keys:
            buckets.setdefault(tdb_hash(key) % _BUCKETS, []).insert(0, key)
        order = tuple(key for b in sorted(buckets) for key in buckets[b])
        if len(_ORDERS) < 4096:  # key sets are schema-bound, so this stays small
            _ORDERS[keys] = order
    return order


#: insertion-ordered key tuple -> QDict output order (pure function of the keys)
_ORDERS: dict[tuple[str, ...], tuple[str, ...]] = {}


def qdict_order(value: Any) -> Any:
    """Reorder every dict (recursively) the way qemu-ga's JSON output lists the keys."""
    if isinstance(value, list):
        return [qdict_order(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        key: qdict_order(item) if isinstance(item, dict | list) else item
        for key in _key_order(tuple(value))
        for item in (value[key],)
    }


_KEBAB: dict[str, str] = {}


def _kebab(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = _KEBAB.get(key)
        if name is None:
            name = _KEBAB[key] = key.replace("_", "-")
        out[name] = value
    return out


def render_hostname(body: dict[str, Any]) -> dict[str, Any]:
    """``{host-name}``."""
    return {"host-name": body["hostname"]}


def render_timezone(body: dict[str, Any]) -> dict[str, Any]:
    """``{zone?, offset}`` (abbreviation, seconds east of UTC)."""
    out: dict[str, Any] = {}
    if body.get("zone"):
        out["zone"] = body["zone"]
    out["offset"] = int(body["offset"])
    return qdict_order(out)  # type: ignore[no-any-return]


def render_users(body: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{user, login-time}]``."""
    return qdict_order(  # type: ignore[no-any-return]
        [{"user": u["user"], "login-time": float(u["login_time"])} for u in body]
    )


def with_counters(layout: dict[str, Any]) -> dict[str, Any]:
    """A pushed interface layout completed with the counters read now (the monitor's
    ``monitor.interfaces`` body, made here without a hop)."""
    counters = read_net_dev(str(layout["net_dev"]))
    interfaces = [{**iface, "stats": counters.get(iface["name"])} for iface in layout["interfaces"]]
    return {**layout, "interfaces": interfaces}


def render_interfaces(body: dict[str, Any]) -> list[dict[str, Any]]:
    """qemu-ga lists statistics only for interfaces that have an address."""
    out: list[dict[str, Any]] = []
    for iface in body["interfaces"]:
        item: dict[str, Any] = {"name": iface["name"]}
        if iface.get("hwaddr") is not None:
            item["hardware-address"] = iface["hwaddr"]
        if iface["addresses"]:
            item["ip-addresses"] = [
                {"ip-address": a["address"], "ip-address-type": a["family"], "prefix": a["prefix"]}
                for a in iface["addresses"]
            ]
            if iface.get("stats") is not None:
                item["statistics"] = _kebab(iface["stats"])
        out.append(item)
    return qdict_order(out)  # type: ignore[no-any-return]


def render_fsinfo(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``GuestFilesystemInfo`` list; sizes absent where statvfs failed or hung."""
    out: list[dict[str, Any]] = []
    for fs in body["filesystems"]:
        item: dict[str, Any] = {
            "name": fs["name"],
            "mountpoint": fs["mountpoint"],
            "type": fs["type"],
        }
        for key in ("used_bytes", "total_bytes", "total_bytes_privileged"):
            if key in fs:
                item[key.replace("_", "-")] = fs[key]
        item["disk"] = fs["disks"]
        out.append(item)
    return qdict_order(out)  # type: ignore[no-any-return]


def render_disks(body: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``GuestDiskInfo`` list (SMART fields in kebab-case)."""
    out: list[dict[str, Any]] = []
    for disk in body:
        item: dict[str, Any] = {"name": disk["name"], "partition": disk["partition"]}
        for key in ("dependencies", "address", "alias"):
            if key in disk:
                item[key] = disk[key]
        if "smart" in disk:
            item["smart"] = _kebab(disk["smart"])
        out.append(item)
    return qdict_order(out)  # type: ignore[no-any-return]


def render_diskstats(body: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``GuestDiskStatsInfo`` list."""
    return qdict_order(  # type: ignore[no-any-return]
        [
            {
                "name": d["name"],
                "major": d["major"],
                "minor": d["minor"],
                "stats": _kebab(d["stats"]),
            }
            for d in body
        ]
    )


def render_cpustats(body: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``GuestCpuStats`` flat union, type ``linux``."""
    return qdict_order([{"type": "linux", **c} for c in body])  # type: ignore[no-any-return]


def _no_args(args: dict[str, Any]) -> None:
    del args


ROUTES: tuple[QgaRoute, ...] = (
    QgaRoute(
        "guest-get-osinfo",
        "monitor",
        "monitor.osinfo",
        to_request=_no_args,
        render=qdict_order,
        pushed="monitor.osinfo",
    ),
    QgaRoute(
        "guest-get-host-name",
        "monitor",
        "monitor.hostname",
        to_request=lambda args: {"fqdn": False},
        render=render_hostname,
    ),
    QgaRoute("guest-get-timezone", "monitor", "monitor.timezone", to_request=_no_args, render=render_timezone),
    QgaRoute("guest-get-users", "monitor", "monitor.users", to_request=_no_args, render=render_users),
    QgaRoute(
        "guest-network-get-interfaces",
        "monitor",
        "monitor.interfaces",
        to_request=lambda args: {"profile": "qga"},
        render=render_interfaces,
        pushed="monitor.interfaces/qga",
        live=with_counters,
    ),
    QgaRoute("guest-network-get-route", "monitor", "monitor.routes", to_request=_no_args, render=qdict_order),
    QgaRoute(
        "guest-get-fsinfo",
        "monitor",
        "monitor.filesystems",
        to_request=lambda args: {"scope": "block"},
        render=render_fsinfo,
    ),
    QgaRoute("guest-get-disks", "monitor", "monitor.disks", to_request=_no_args, render=render_disks),
    QgaRoute("guest-get-diskstats", "monitor", "monitor.diskstats", to_request=_no_args, render=render_diskstats),
    QgaRoute("guest-get-cpustats", "monitor", "monitor.cpustats", to_request=_no_args, render=render_cpustats),
    QgaRoute("guest-get-load", "monitor", "monitor.load", to_request=_no_args, render=qdict_order),
)

"""QGA routes served by the lifecycle actor (power, suspend, fsfreeze, fstrim, time, CPUs, memory).

Request bodies and reply shapes are documented in ``concierge.actors.lifecycle.messages``;
replies already carry qemu-ga's field names, so rendering is the identity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from concierge.actors.lifecycle import messages as m
from concierge.transport.qga.commands.registry import QgaRoute

ACTOR = "lifecycle"


def _const(body: dict[str, Any]) -> Callable[[dict[str, Any]], Any]:
    def to_request(args: dict[str, Any]) -> Any:
        del args
        return dict(body)

    return to_request


def _shutdown(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "mode": args.get("mode", "powerdown"),
        "delay_s": 0,
        "message": "hypervisor initiated shutdown",
    }


def _freeze_list(args: dict[str, Any]) -> dict[str, Any]:
    return {"mountpoints": args.get("mountpoints")}


def _fstrim(args: dict[str, Any]) -> dict[str, Any]:
    return {"minimum": args.get("minimum")}


def _set_time(args: dict[str, Any]) -> dict[str, Any]:
    return {"time": args.get("time")}


def _set_vcpus(args: dict[str, Any]) -> dict[str, Any]:
    return {"vcpus": args.get("vcpus", [])}


def _set_memory_blocks(args: dict[str, Any]) -> dict[str, Any]:
    return {"mem-blks": args.get("mem-blks", [])}


ROUTES: tuple[QgaRoute, ...] = (
    # re-sent when the lifecycle actor died before answering: a lost shutdown looks like a
    # successful one to the host (no reply on success); a duplicate PowerOff is harmless
    QgaRoute(
        "guest-shutdown",
        ACTOR,
        m.SHUTDOWN,
        timeout_s=30.0,
        success_response=False,
        retry_unavailable=True,
        to_request=_shutdown,
    ),
    QgaRoute(
        "guest-suspend-disk",
        ACTOR,
        m.SUSPEND,
        timeout_s=30.0,
        success_response=False,
        to_request=_const({"mode": "disk"}),
    ),
    QgaRoute(
        "guest-suspend-ram",
        ACTOR,
        m.SUSPEND,
        timeout_s=30.0,
        success_response=False,
        to_request=_const({"mode": "ram"}),
    ),
    QgaRoute(
        "guest-suspend-hybrid",
        ACTOR,
        m.SUSPEND,
        timeout_s=30.0,
        success_response=False,
        to_request=_const({"mode": "hybrid"}),
    ),
    QgaRoute(
        "guest-fsfreeze-status",
        ACTOR,
        m.FREEZE_STATUS,
        timeout_s=5.0,
        allowed_while_frozen=True,
        retry_unavailable=True,
        to_request=_const({}),
    ),
    QgaRoute(
        "guest-fsfreeze-freeze",
        ACTOR,
        m.FREEZE,
        timeout_s=600.0,
        with_channel=True,
        to_request=_const({"mountpoints": None}),
    ),
    QgaRoute(
        "guest-fsfreeze-freeze-list", ACTOR, m.FREEZE, timeout_s=600.0, with_channel=True, to_request=_freeze_list
    ),
    QgaRoute(
        "guest-fsfreeze-thaw",
        ACTOR,
        m.THAW,
        timeout_s=120.0,
        allowed_while_frozen=True,
        retry_unavailable=True,
        to_request=_const({}),
    ),
    QgaRoute("guest-fstrim", ACTOR, m.FSTRIM, timeout_s=600.0, to_request=_fstrim),
    QgaRoute("guest-get-time", ACTOR, m.GET_TIME, timeout_s=5.0, to_request=_const({})),
    QgaRoute("guest-set-time", ACTOR, m.SET_TIME, timeout_s=30.0, to_request=_set_time),
    QgaRoute("guest-get-vcpus", ACTOR, m.GET_VCPUS, to_request=_const({})),
    QgaRoute("guest-set-vcpus", ACTOR, m.SET_VCPUS, to_request=_set_vcpus),
    QgaRoute("guest-get-memory-blocks", ACTOR, m.GET_MEMORY_BLOCKS, to_request=_const({})),
    QgaRoute("guest-set-memory-blocks", ACTOR, m.SET_MEMORY_BLOCKS, timeout_s=60.0, to_request=_set_memory_blocks),
    QgaRoute("guest-get-memory-block-info", ACTOR, m.GET_MEMORY_BLOCK_INFO, to_request=_const({})),
)

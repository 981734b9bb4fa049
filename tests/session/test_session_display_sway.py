"""Display actor's sway backend against a real headless sway (IPC socket)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

from session_helpers import sent, wait_until

from concierge.actors.display.node import DisplayNode
from concierge.testing.context import FakeContext
from concierge.testing.peers import require_binary


def outputs(sway: dict[str, str]) -> dict[str, dict[str, int]]:
    env = dict(os.environ, SWAYSOCK=sway["SWAYSOCK"])
    raw = subprocess.run(["swaymsg", "-t", "get_outputs", "-r"], env=env, capture_output=True, check=True).stdout
    return {o["name"]: o["rect"] for o in json.loads(raw) if o.get("active")}


def geometry(ctx: FakeContext) -> list[Any]:
    return [b["monitors"] for d, t, b in list(ctx.casts) if t == "input.geometry"]


def test_sway_two_monitors_and_external_change(sway: dict[str, str], session_ctx: Any) -> None:
    require_binary("swaymsg", "sway")
    env = dict(os.environ, SWAYSOCK=sway["SWAYSOCK"])
    if len(outputs(sway)) < 2:
        subprocess.run(["swaymsg", "create_output"], env=env, check=True, capture_output=True)
    ctx: FakeContext = session_ctx("display", {"backend": "sway", "sway_socket": sway["SWAYSOCK"]})
    node = ctx.run_node(DisplayNode)
    wait_until(lambda: geometry(ctx), what="initial geometry")
    body = {
        "num_of_monitors": 2,
        "flags": 1,
        "monitors": [
            {"width": 1280, "height": 800, "depth": 32, "x": 0, "y": 0},
            {"width": 1024, "height": 768, "depth": 32, "x": 1280, "y": 0},
        ],
    }
    reply = ctx.ask("spice.monitors_config", body)
    assert reply.ok and reply.body["applied"], reply
    assert sent(ctx, "reply")[-1] == {"type": 2, "error": 1}
    rects = sorted((r["x"], r["y"], r["width"], r["height"]) for r in outputs(sway).values())
    assert rects == [(0, 0, 1280, 800), (1280, 0, 1024, 768)]
    assert geometry(ctx)[-1] == [
        {"x": 0, "y": 0, "width": 1280, "height": 800},
        {"x": 1280, "y": 0, "width": 1024, "height": 768},
    ]
    watched = node._watched  # type: ignore[attr-defined]
    if watched is None:  # only acceptable on sway < 1.8 (Debian 12 ships 1.7): no output events
        version = subprocess.run(["sway", "--version"], capture_output=True, text=True, check=True)
        assert re.search(r"version 1\.[0-7]\b", version.stdout), version.stdout
        return
    # someone else (the user's config, a hotplug) moves an output: the geometry follows
    name = sorted(outputs(sway))[1]
    subprocess.run(["swaymsg", f"output {name} position 0 800"], env=env, check=True, capture_output=True)

    def moved() -> bool:
        ctx.fire_fd(watched)  # the bridge's poll, by hand
        return geometry(ctx)[-1][1] == {"x": 0, "y": 800, "width": 1024, "height": 768}

    wait_until(moved, what="geometry after an output event")

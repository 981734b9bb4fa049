"""Display actor against real X servers: Xorg + dummy (resizable, 16 outputs) and Xvfb."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
from session_helpers import sent, wait_until

from concierge.actors.display.layout import LayoutError, parse_monitors_config
from concierge.actors.display.node import DisplayNode
from concierge.testing.context import FakeContext

USE_POS, PHYSICAL = 1, 2


def xrandr_layout(display: str) -> dict[str, str]:
    out = subprocess.run(["xrandr", "-d", display, "--query"], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"^(\S+) connected (?:primary )?(\d+x\d+\+\d+\+\d+)", out, re.M))


def geometry_casts(ctx: FakeContext) -> list[list[dict[str, int]]]:
    return [b["monitors"] for dst, t, b in list(ctx.casts) if dst == "input" and t == "input.geometry"]


def mon(w: int, h: int, x: int = 0, y: int = 0) -> dict[str, int]:
    return {"width": w, "height": h, "depth": 32, "x": x, "y": y}


@pytest.fixture()
def xorg_node(xorg_dummy: str, session_ctx: Any) -> FakeContext:
    ctx: FakeContext = session_ctx("display", {"backend": "x11", "x11_display": xorg_dummy})
    ctx.run_node(DisplayNode)
    wait_until(lambda: geometry_casts(ctx), what="initial geometry")
    return ctx


def test_two_monitors_layout_reply_and_geometry(xorg_node: FakeContext, xorg_dummy: str) -> None:
    body = {
        "num_of_monitors": 2,
        "flags": USE_POS,
        "monitors": [mon(1280, 800, 0, 0), mon(1024, 768, 1280, 0)],
    }
    reply = xorg_node.ask("spice.monitors_config", body)
    assert reply.ok and reply.body["applied"]
    assert xrandr_layout(xorg_dummy) == {"DUMMY0": "1280x800+0+0", "DUMMY1": "1024x768+1280+0"}
    assert sent(xorg_node, "reply")[-1] == {"type": 2, "error": 1}
    assert geometry_casts(xorg_node)[-1] == [
        {"x": 0, "y": 0, "width": 1280, "height": 800},
        {"x": 1280, "y": 0, "width": 1024, "height": 768},
    ]


def test_new_mode_physical_tail_and_negative_origin(xorg_node: FakeContext, xorg_dummy: str) -> None:
    body = {
        "num_of_monitors": 2,
        "flags": USE_POS | PHYSICAL,
        "monitors": [mon(1366, 768, -1366, 100), mon(1600, 900, 0, 0)],
        "physical_sizes": [{"width": 344, "height": 194}, {"width": 400, "height": 225}],
    }
    reply = xorg_node.ask("spice.monitors_config", body)
    assert reply.ok and reply.body["applied"]
    assert xrandr_layout(xorg_dummy) == {"DUMMY0": "1366x768+0+100", "DUMMY1": "1600x900+1366+0"}
    assert sent(xorg_node, "reply")[-1]["error"] == 1


def test_sparse_config_disables_display_zero(xorg_node: FakeContext, xorg_dummy: str) -> None:
    body = {"num_of_monitors": 2, "flags": USE_POS, "monitors": [mon(0, 0), mon(1024, 768)]}
    reply = xorg_node.ask("spice.monitors_config", body)
    assert reply.ok and reply.body["applied"]
    assert xrandr_layout(xorg_dummy).get("DUMMY1") == "1024x768+0+0"
    assert "DUMMY0" not in xrandr_layout(xorg_dummy)
    assert geometry_casts(xorg_node)[-1][1] == {"x": 0, "y": 0, "width": 1024, "height": 768}


def test_device_info_maps_display_to_output(xorg_node: FakeContext, xorg_dummy: str) -> None:
    xorg_node.tell(
        "spice.graphics_device_info",
        {
            "count": 1,
            "display_info": [
                {
                    "channel_id": 0,
                    "monitor_id": 0,
                    "device_display_id": 3,
                    "device_address": "pci/0000/02.0",
                }
            ],
        },
    )
    body = {"num_of_monitors": 1, "flags": 0, "monitors": [mon(1280, 800)]}
    reply = xorg_node.ask("spice.monitors_config", body)
    assert reply.ok and reply.body["applied"]
    assert xrandr_layout(xorg_dummy).get("DUMMY3") == "1280x800+0+0"
    assert geometry_casts(xorg_node)[-1] == [{"x": 0, "y": 0, "width": 1280, "height": 800}]
    xorg_node.tell("spice.graphics_device_info", {"count": 0, "display_info": []})
    xorg_node.ask("spice.monitors_config", {"num_of_monitors": 1, "flags": 0, "monitors": [mon(1280, 800)]})


def test_impossible_layout_replies_error(xorg_node: FakeContext) -> None:
    body = {"num_of_monitors": 1, "flags": 0, "monitors": [mon(16000, 16000)]}
    reply = xorg_node.ask("spice.monitors_config", body)
    assert reply.ok and not reply.body["applied"]
    assert sent(xorg_node, "reply")[-1] == {"type": 2, "error": 2}


def test_malformed_config_is_refused_with_error_reply(xorg_node: FakeContext) -> None:
    reply = xorg_node.ask("spice.monitors_config", {"num_of_monitors": 3, "monitors": [mon(10, 10)]})
    assert not reply.ok and reply.code == "BAD_REQUEST"
    assert sent(xorg_node, "reply")[-1]["error"] == 2


def test_xvfb_fixed_screen(xvfb: str, session_ctx: Any) -> None:
    ctx: FakeContext = session_ctx("display", {"backend": "x11", "x11_display": xvfb})
    ctx.run_node(DisplayNode)
    first = wait_until(lambda: geometry_casts(ctx), what="initial geometry")[0]
    assert first == [{"x": 0, "y": 0, "width": 1920, "height": 1080}]
    same = ctx.ask("spice.monitors_config", {"num_of_monitors": 1, "flags": 0, "monitors": [mon(1920, 1080)]})
    assert same.ok and same.body["applied"] and sent(ctx, "reply")[-1]["error"] == 1
    two = {"num_of_monitors": 2, "flags": 0, "monitors": [mon(800, 600), mon(800, 600)]}
    reply = ctx.ask("spice.monitors_config", two)
    assert reply.ok and not reply.body["applied"]  # one fixed output: honest ERROR
    assert sent(ctx, "reply")[-1]["error"] == 2


def test_unsupported_session_replies_error(session_ctx: Any) -> None:
    ctx: FakeContext = session_ctx("display", {"backend": "none"})
    ctx.run_node(DisplayNode)
    reply = ctx.ask("spice.monitors_config", {"num_of_monitors": 1, "monitors": [mon(800, 600)]})
    assert not reply.ok and reply.code == "UNAVAILABLE"
    assert sent(ctx, "reply") == [{"type": 2, "error": 2}]
    assert ctx.health[0] == "degraded"


def test_layout_parsing_rules() -> None:
    mons, off = parse_monitors_config(
        {
            "num_of_monitors": 2,
            "flags": 0,
            "monitors": [mon(800, 600, 500, 500), mon(640, 480, 9, 9)],
        }
    )
    assert [(m.x, m.y) for m in mons] == [
        (0, 0),
        (800, 0),
    ] and off == []  # no USE_POS: side by side
    with pytest.raises(LayoutError, match=r"^every monitor is disabled$"):
        parse_monitors_config({"num_of_monitors": 1, "monitors": [mon(0, 0)]})
    with pytest.raises(LayoutError, match=r"^physical size tail does not match the monitor count$"):
        parse_monitors_config(
            {
                "num_of_monitors": 1,
                "flags": PHYSICAL,
                "monitors": [mon(8, 8)],
                "physical_sizes": [{"width": 1}, {"width": 2}],
            }
        )


def test_external_layout_change_is_reported(xorg_node: FakeContext, xorg_dummy: str) -> None:
    xorg_node.ask("spice.monitors_config", {"num_of_monitors": 1, "flags": 0, "monitors": [mon(1280, 800)]})
    node = xorg_node.node
    assert node is not None and node._watched is not None  # type: ignore[attr-defined]
    subprocess.run(["xrandr", "-d", xorg_dummy, "--output", "DUMMY0", "--mode", "1024x768_60.00"], check=True)
    expected = [{"x": 0, "y": 0, "width": 1024, "height": 768}]

    def reported() -> bool:
        xorg_node.fire_fd(node._watched)  # type: ignore[attr-defined]  # the bridge's poll, by hand
        return geometry_casts(xorg_node)[-1] == expected

    wait_until(reported, what="geometry after an external xrandr change")

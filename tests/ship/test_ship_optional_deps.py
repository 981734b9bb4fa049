"""An optional library that is absent (python-xlib, python-evdev: hidden here by a module that
refuses to import, first on PYTHONPATH) makes the actor WAITING with "install ..." (exit 69,
retried on parole), never a crash loop; in the session group only the part that needs it is
left out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from concierge.testing.rpc import ActorClient

FAST = "[supervisor]\nbackoff_base_s = 0.05\n[agent]\nheartbeat_interval_s = 0.2\n"


def hide(tmp_path: Path, *modules: str) -> None:
    """Modules, first on PYTHONPATH, whose import fails as if they were not installed."""
    shadow = tmp_path / "hidden"
    for module in modules:
        (shadow / module).mkdir(parents=True)
        (shadow / module / "__init__.py").write_text(
            f"raise ModuleNotFoundError({f'No module named {module!r}'!r}, name={module!r})\n"
        )


def start_hidden(
    agent_factory: Any, tmp_path: Path, actors: dict[str, Any], *modules: str, args: tuple[str, ...] = ()
) -> Any:
    agent = agent_factory(actors, extra=FAST, args=args)
    agent.env["PYTHONPATH"] = str(tmp_path / "hidden") + ":" + agent.env["PYTHONPATH"]
    hide(tmp_path, *modules)
    agent.start(wait=False)
    return agent


def test_missing_evdev_makes_input_wait_with_the_package_to_install(agent_factory: Any, tmp_path: Path) -> None:
    actors = {"input": {"entry": "concierge.actors.input.node:InputNode"}}
    agent = start_hidden(agent_factory, tmp_path, actors, "evdev", args=("--input-sink", "uinput"))
    status = agent.wait_for(lambda s: s["actors"][0]["waiting"], 30, "input WAITING")
    entry = status["actors"][0]
    assert "evdev is not installed: install python3-evdev" in entry["reason"]
    assert entry["restarts"] == 0, "an absent library is not a crash"
    assert "WAITING" in agent.cli("status").stdout


def test_missing_xlib_makes_the_clipboard_wait_not_crash(agent_factory: Any, tmp_path: Path) -> None:
    actors = {
        "clipboard": {
            "entry": "concierge.actors.clipboard.node:ClipboardNode",
            "settings": {"backend": "x11", "x11_display": ":99"},
        }
    }
    agent = start_hidden(agent_factory, tmp_path, actors, "Xlib")
    status = agent.wait_for(lambda s: s["actors"][0]["waiting"], 30, "clipboard WAITING")
    assert "Xlib is not installed: install python3-xlib" in status["actors"][0]["reason"]
    time.sleep(1.0)
    again = agent.actor("clipboard")
    assert again["waiting"] and again["restarts"] == 0, "retried on parole, not restarted in a loop"


def test_a_group_leaves_out_only_the_part_that_needs_the_absent_library(agent_factory: Any, tmp_path: Path) -> None:
    actors = {"group": {"entry": "concierge.testing.nodes:PartlyOptionalNode", "essential": True}}
    agent = start_hidden(agent_factory, tmp_path, actors, "Xlib")
    agent.wait_for(lambda s: s["actors"][0]["state"] == "RUNNING", 30, "group RUNNING")
    with ActorClient(agent.runtime_dir, "tester") as client:
        assert client.request("group", "echo", {"still": "serving"}).unwrap() == {"still": "serving"}
    logs = agent.cli("logs", "group").stdout
    assert "needs_xlib" in logs or "unavailable" in logs
    assert "install python3-xlib" in logs

"""``concierge config check`` refuses what the actors would refuse at start (exit 78), naming
the file, the dotted key, the keys that exist there and the values an enum allows."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from concierge.config.loader import defaults_text
from concierge.supervisor.settings_check import SETTINGS_STRUCTS


def check(tmp_path: Path, text: str, *extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "concierge.toml"
    path.write_text(text)
    cmd = [sys.executable, "-m", "concierge", "config", "check", "--config", str(path), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[actors.guestops.settings.files]\nalow = true\n",
            "actors.guestops.settings.files.alow: unknown key (known here: allow, allow_paths, deny_paths)",
        ),
        ("[actors.monitor.settings]\nfrobnicate = 1\n", "actors.monitor.settings.frobnicate: unknown key"),
        ('[actors.guestops.settings]\nworkers = "eight"\n', "actors.guestops.settings.workers: Expected `int`"),
        ('[agent]\nlog_format = "xml"\n', "agent.log_format: Invalid enum value 'xml' (allowed: auto, json, text)"),
        (
            '[actors.transport.settings.protocol_settings.qga]\nblock_rpc = ["guest-exec"]\n',
            "protocol_settings.qga.block_rpc: unknown key (known here: allow_rpcs, block_rpcs",
        ),
        (
            '[channels.qga]\nprotocol = "qga"\nmethod = "serial"\npath = "/dev/x"\n',
            "channels.qga.method: Invalid enum value 'serial' (allowed: isa-serial, unix-connect, unix-listen",
        ),
    ],
)
def test_a_typo_in_settings_fails_the_check_with_the_key_and_what_is_allowed(
    tmp_path: Path, text: str, expected: str
) -> None:
    result = check(tmp_path, text)
    assert result.returncode == 78, result.stdout
    assert str(tmp_path / "concierge.toml") in result.stderr
    assert expected in result.stderr


def test_the_same_typo_makes_the_actor_fatal_at_start(agent_factory: object, tmp_path: Path) -> None:
    """What the check refuses is what the actor refuses: guestops with the typo exits 78."""
    from typing import Any

    factory: Any = agent_factory
    agent = factory({"guestops": {"entry": "concierge.actors.guestops.node:GuestOpsNode", "settings": {"wrokers": 2}}})
    agent.start(wait=False)
    status = agent.wait_for(lambda s: s["actors"][0]["state"] == "FATAL", 30, "guestops FATAL")
    assert "wrokers" in status["actors"][0]["reason"]
    result = check(tmp_path, agent.config_path.read_text())
    assert result.returncode == 78 and "actors.guestops.settings.wrokers: unknown key" in result.stderr


def test_valid_settings_pass_and_every_builtin_actor_is_checked(tmp_path: Path) -> None:
    result = check(tmp_path, "[actors.guestops.settings.files]\nallow = false\n", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["unchecked"] == [] and "guestops" in doc["checked"]
    for actor_id, spec in tomllib.loads(defaults_text())["actors"].items():
        assert spec["entry"] in SETTINGS_STRUCTS, f"{actor_id}: add its settings struct to SETTINGS_STRUCTS"

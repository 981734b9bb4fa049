"""Every command line that README.md, docs/ and the man pages show works as written.

Commands an operator types against the agent (``concierge ...``, the QGA ``socat`` lines) run
unchanged in a shell, against a live agent with the real default actors: ``concierge`` on
PATH is this checkout, ``$CONCIERGE_RUNTIME_DIR`` points at the live agent, and the documented
runtime directory ``/run/concierge`` is mapped to it in the socat lines. Commands that cannot
run here are in :data:`NOT_RUN_HERE`, each with the reason and the weaker check it gets (its
``--help`` lists every option the line uses, or the script exists and compiles). A new command
line that matches neither fails this test until someone decides which it is.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from doc_commands import ROOT, DocCommand, documented_commands

from concierge.testing.harness import AgentHarness

COMMANDS, UNTAGGED = documented_commands()

#: regex on the command line -> (check, why it cannot run here). Reviewed: add with a reason.
NOT_RUN_HERE: dict[str, tuple[str, str]] = {
    r"^tools/dev (run|test)$": ("exists", "runs the agent in the foreground / the whole suite (this test is in it)"),
    r"^tools/ship/build-deb\.sh$": ("exists", "builds the .deb for minutes: tests/ship/test_ship_deb.py runs it"),
    r"^ls dist/": ("skip", "lists what build-deb.sh wrote: tests/ship/test_ship_deb.py checks it"),
    r"^(sudo )?apt-get install ": ("skip", "installs Debian packages: tools/dev test does, from tools/ci/apt-*.txt"),
    r"^(CONCIERGE_VM_SRC=\S+ )?tools/vm/run-e2e\b": ("help", "boots a QEMU guest for minutes (docs/vm-e2e.md)"),
    r"^tools/vm/run-libvirt-e2e\b": ("help", "boots two libvirt guests for minutes (docs/vm-e2e.md)"),
    r"^(CONCIERGE_E2E=\w+ )?tools/vm/ci-e2e\.sh$": ("exists", ".ci/run runs it after the suite, where KVM works"),
    r"^\.venv/bin/python tools/bench/bench_\w+\.py\b": ("help", "benchmarks need minutes on a quiet machine"),
    r"^nice -n \d+ \.venv/bin/python tools/fuzz/run\.py\b": (
        "skip",
        "the long fuzz run takes hours: .ci/run runs the same tool for 100 s, tests/fuzz replays the corpus",
    ),
    r"^(systemctl|journalctl) ": ("skip", "needs systemd as PID 1 and the installed unit: the real-VM run"),
}
#: commands that do not exit by themselves: alive after a while, with output, is success
LONG_RUNNING = re.compile(r"^concierge (logs .* (-f|--follow)\b|run\b|session\b)")
#: exit statuses a command may legitimately end with on an arbitrary machine (default: 0)
EXPECTED_STATUS: dict[str, frozenset[int]] = {
    r"^concierge doctor\b": frozenset({0, 1, 4}),  # 1 warnings, 4 conflicts: depends on the machine
}


def rule_for(command: DocCommand) -> tuple[str, str] | None:
    for pattern, rule in NOT_RUN_HERE.items():
        if re.search(pattern, command.text):
            return rule
    return None


def runs_live(command: DocCommand) -> bool:
    return command.text.startswith("concierge ") or bool(re.match(r"^(echo|printf) .*\| *socat ", command.text))


def test_every_fenced_block_says_whether_it_holds_commands() -> None:
    assert not UNTAGGED, f"tag these blocks ```sh (commands) or ```text/```toml (not run): {UNTAGGED}"


def test_every_command_line_is_run_or_explicitly_not_run_here() -> None:
    undecided = [str(c) for c in COMMANDS if not runs_live(c) and rule_for(c) is None]
    assert not undecided, "run these in test_ship_doc_commands.py or add them to NOT_RUN_HERE with why:\n" + "\n".join(
        undecided
    )
    assert any(runs_live(c) for c in COMMANDS), "the extraction found no operator command: it is broken"


@pytest.fixture(scope="module")
def live_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The agent with its real default actors; the environment documented commands run in."""
    root = tmp_path_factory.mktemp("docs")
    agent = AgentHarness(root, "", args=("--log-format", "text", "--input-sink", f"file:{root / 'input'}"))
    agent.start(wait=False)
    try:
        agent.wait_for(
            lambda s: all(a["state"] in ("RUNNING", "DORMANT") or a["waiting"] for a in s["actors"]),
            60,
            "the default actors",
        )
        bindir = root / "bin"
        bindir.mkdir()
        launcher = bindir / "concierge"
        launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m concierge "$@"\n')
        launcher.chmod(0o755)
        env = dict(agent.env)
        env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
        env["CONCIERGE_RUNTIME_DIR"] = str(agent.runtime_dir)
        yield env
    finally:
        agent.stop()


def _live_ids() -> list[Any]:
    return [pytest.param(c, id=f"{c.source}:{c.line}") for c in COMMANDS if runs_live(c)]


@pytest.mark.parametrize("command", _live_ids())
def test_documented_command_runs_as_written(command: DocCommand, live_agent: dict[str, str]) -> None:
    text = command.text.replace("/run/concierge/", live_agent["CONCIERGE_RUNTIME_DIR"] + "/")
    proc = subprocess.Popen(
        ["bash", "-c", text],
        cwd=ROOT,
        env=live_agent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",  # a QGA reply after guest-sync-delimited starts with a raw 0xff
        start_new_session=True,
    )
    if LONG_RUNNING.match(command.text):
        time.sleep(3.0)
        still_running = proc.poll() is None
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert still_running, f"{command} exited {proc.returncode}: {err}"
        assert out.strip(), f"{command} printed nothing"
        return
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{command} did not finish in 60 s")
    allowed = next((codes for p, codes in EXPECTED_STATUS.items() if re.search(p, command.text)), frozenset({0}))
    assert proc.returncode in allowed, f"{command} exited {proc.returncode}:\n{out}\n{err}"
    assert "Traceback" not in err, f"{command}:\n{err}"
    if "socat" in command.text:
        assert '"return"' in out, f"{command} got no QGA answer: {out!r} {err!r}"


def _not_live_ids() -> list[Any]:
    return [pytest.param(c, id=f"{c.source}:{c.line}") for c in COMMANDS if not runs_live(c) and rule_for(c)]


@pytest.mark.parametrize("command", _not_live_ids())
def test_documented_command_that_cannot_run_here_still_parses(command: DocCommand) -> None:
    rule = rule_for(command)
    assert rule is not None
    check, _why = rule
    words = shlex.split(command.text)
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # VAR=value prefixes
        words.pop(0)
    if check == "skip":
        return
    program = [w for w in words if not w.startswith("-")][: 2 if words[0].endswith("python") else 1]
    script = ROOT / program[-1]
    assert script.is_file() and os.access(script if len(program) == 1 else ROOT / program[0], os.X_OK), (
        f"{command}: {program} is not an executable file of the repository"
    )
    if script.suffix == ".py" or script.read_text(errors="replace").startswith("#!/usr/bin/env python3"):
        compile(script.read_text(), str(script), "exec")  # a syntax error fails here, nothing runs
    options = [w.split("=", 1)[0] for w in words if w.startswith("--")]
    if check == "help" and options:
        run = [*program[:-1], str(script), "--help"] if len(program) == 2 else [str(script), "--help"]
        result = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, f"{command}: --help failed: {result.stderr}"
        for option in options:
            assert option in result.stdout, f"{command}: {option} is not an option of {program[-1]}"

"""Migration from qemu-ga: its configuration file and command line, read from real files in a
temporary root, carried into a concierge.d drop-in; the agent then keeps refusing what qemu-ga
refused, with qemu-ga's own answer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from concierge.config import qemu_ga
from concierge.supervisor.doctor_migration import probe_qemu_ga
from concierge.testing.harness import AgentHarness, catalog
from concierge.testing.peers import require, require_binary
from concierge.testing.qga_peer import QemuGa, RawClient


def qemu_ga_dump(*args: str, conf_dir: Path | None = None) -> str:
    """qemu-ga's own ``-D`` dump: the configuration file format, written by qemu-ga itself. With
    ``conf_dir``, qemu-ga reads that directory as /etc/qemu (a private mount namespace)."""
    binary = require_binary("qemu-ga", "qemu-guest-agent")
    if conf_dir is None:
        run = [binary, "-D", *args]
    else:
        require(os.geteuid() == 0 and shutil.which("unshare") is not None, "root and unshare for a mount namespace")
        script = 'mount --bind "$1" /etc/qemu && shift && exec "$@"'
        run = ["unshare", "-m", "sh", "-c", script, "sh", str(conf_dir), binary, "-D", *args]
    return subprocess.run(run, capture_output=True, text=True, check=True, timeout=30).stdout


def make_root(tmp_path: Path, conf: str | None = None, default: str | None = None) -> Path:
    root = tmp_path / "root"
    (root / "etc/qemu").mkdir(parents=True)
    if conf is not None:
        (root / qemu_ga.CONF).write_text(conf)
    if default is not None:
        (root / "etc/default").mkdir(parents=True)
        (root / "etc/default/qemu-guest-agent").write_text(default)
    return root


def import_cli(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "concierge", "config", "import-qemu-ga", "--root", str(root), *extra],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_file_and_command_line_merge_as_qemu_ga_merges_them(tmp_path: Path) -> None:
    conf = qemu_ga_dump("-b", "guest-exec,guest-file-open", "-F", "-v")
    args = "-b guest-exec-status -F/etc/qemu/other-hook -t /var/lib/qga"
    root = make_root(tmp_path, conf, f'# Debian\nDAEMON_ARGS="{args}"\n')
    theirs = qemu_ga_dump(*args.split(), conf_dir=root / "etc/qemu")
    ours = qemu_ga.read_qemu_ga(root)
    dumped = dict(line.split("=", 1) for line in theirs.splitlines() if "=" in line)
    for key in ("method", "path", "fsfreeze-hook", "statedir", "verbose"):
        assert ours.values[key] == dumped[key], key
    assert ours.rpcs("block-rpcs") == sorted(dumped["block-rpcs"].split(","))
    assert ours.sources == [str(root / qemu_ga.CONF), str(root / "etc/default/qemu-guest-agent")]


def test_import_writes_a_dropin_doctor_reports_and_a_second_run_keeps(tmp_path: Path) -> None:
    conf = qemu_ga_dump("-b", "guest-exec", "-F", "-t", "/var/lib/qga", "-l", "/var/log/qga.log")
    root = make_root(tmp_path, conf)
    (pending,) = probe_qemu_ga(root)
    assert pending.status == "warn" and "guest-exec" in pending.detail and "import-qemu-ga" in pending.detail
    dry = import_cli(root, "--dry-run")
    assert dry.returncode == 0 and 'block_rpcs = ["guest-exec"]' in dry.stdout
    assert not (root / qemu_ga.DROPIN).exists(), "--dry-run writes nothing"
    first = import_cli(root)
    assert first.returncode == 0, first.stderr
    assert "not carried over: logfile /var/log/qga.log: logs go to the journal" in first.stdout
    text = (root / qemu_ga.DROPIN).read_text()
    assert 'fsfreeze_hook = "/etc/qemu/fsfreeze-hook"' in text and 'state_dir = "/var/lib/qga"' in text
    (done,) = probe_qemu_ga(root)
    assert done.status == "ok" and "carried over: block-rpcs guest-exec" in done.detail
    (root / qemu_ga.DROPIN).write_text(text + "# edited by the operator\n")
    again = import_cli(root)
    assert again.returncode == 0 and "kept" in again.stdout
    assert (root / qemu_ga.DROPIN).read_text().endswith("# edited by the operator\n")
    forced = json.loads(import_cli(root, "--force", "--json").stdout)
    assert forced["carried"][0] == "block-rpcs guest-exec"
    (root / "etc/concierge/concierge.toml").write_text("# as the package installs it\n")
    check = subprocess.run(
        [sys.executable, "-m", "concierge", "config", "check", "--config", str(root / "etc/concierge/concierge.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize(
    ("default", "expected"),
    [
        ('TRANSPORT=unix-listen:/run/qga.sock\nDAEMON_ARGS=""\n', {"method": "unix-listen", "path": "/run/qga.sock"}),
        ("export DAEMON_ARGS='--block-rpcs=guest-exec --allow-rpcs=guest-ping,guest-exec'\n", {}),
        ("BLACKLIST_RPC=guest-file-open\nFSFREEZE_HOOK_PATHNAME=/etc/qemu-ga/fsfreeze-hook\n", {}),
    ],
)
def test_command_line_files_of_debian_and_red_hat(tmp_path: Path, default: str, expected: dict[str, Any]) -> None:
    root = make_root(tmp_path, None, default)
    if "BLACKLIST_RPC" in default:  # Red Hat keeps it in /etc/sysconfig/qemu-ga
        (root / "etc/default/qemu-guest-agent").unlink()
        (root / "etc/sysconfig").mkdir()
        (root / "etc/sysconfig/qemu-ga").write_text(default)
    settings = qemu_ga.read_qemu_ga(root)
    tables, carried, _ = qemu_ga.plan(settings)
    for key, value in expected.items():
        assert settings.values[key] == value
    if "TRANSPORT" in default:
        assert tables["channels.qga"] == {"protocol": "qga", "method": "unix-listen", "path": "/run/qga.sock"}
    elif "allow" in default:
        assert tables["actors.transport.settings.protocol_settings.qga"] == {
            "block_rpcs": ["guest-exec"],
            "allow_rpcs": ["guest-exec", "guest-ping"],
        }
    else:
        assert tables["actors.transport.settings.protocol_settings.qga"] == {"block_rpcs": ["guest-file-open"]}
        assert tables["actors.lifecycle.settings"] == {"fsfreeze_hook": "/etc/qemu-ga/fsfreeze-hook"}
    assert carried


def test_no_qemu_ga_configuration_is_nothing_to_do(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    result = import_cli(root)
    assert result.returncode == 0 and "nothing to import" in result.stdout
    assert not (root / qemu_ga.DROPIN).exists()


def test_agent_keeps_refusing_what_qemu_ga_blocked(tmp_path: Path) -> None:
    """An image whose qemu-ga.conf blocks guest-exec: after the import the agent refuses it
    exactly as the stock qemu-ga with that configuration does."""
    require_binary("qemu-ga", "qemu-guest-agent")
    short = Path(tempfile.mkdtemp(prefix="ccq"))  # ipc socket paths must stay under 108 bytes
    try:
        refused_alike(make_root(short, qemu_ga_dump("-b", "guest-exec")), tmp_path / "qga.sock")
    finally:
        shutil.rmtree(short)


def refused_alike(root: Path, sock: Path) -> None:
    assert import_cli(root).returncode == 0
    etc = root / "etc/concierge"
    actors = {"transport": {"entry": "concierge.actors.hostlink.node:HostLinkNode", "essential": True}}
    actors["guestops"] = {"entry": "concierge.actors.guestops.node:GuestOpsNode"}
    agent = AgentHarness(etc, catalog(actors), args=("--log-format", "text", "--channel", f"qga=unix-listen:{sock}"))
    try:
        agent.start()
        request = b'{"execute":"guest-exec","arguments":{"path":"/bin/true"}}\n'
        with RawClient(sock) as client:
            ours = json.loads(client.exchange(request)[0])
        with QemuGa(extra_args=("-b", "guest-exec")) as stock, RawClient(stock.socket_path) as client:
            theirs = json.loads(client.exchange(request)[0])
    finally:
        agent.stop()
    assert "error" in ours and ours == theirs, (ours, theirs)
    assert "disabled" in ours["error"]["desc"]

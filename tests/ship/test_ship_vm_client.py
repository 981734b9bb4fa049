"""The e2e harness's host-side QGA client against the real qemu-ga (unix-listen, no VM), and
the QEMU command line the harness builds."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from concierge.testing.peers import require_binary

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools/vm"))

from checks.qga_checks import shape  # noqa: E402
from checks.qga_client import QgaClient, QgaError  # noqa: E402

from vm import PORTS, GuestVM  # noqa: E402


@pytest.fixture
def qga_socket(tmp_path: Path) -> Iterator[Path]:
    qga = require_binary("qemu-ga", "qemu-guest-agent")
    sock = tmp_path / "qga.sock"
    state = tmp_path / "state"
    state.mkdir()
    proc = subprocess.Popen(
        [qga, "-m", "unix-listen", "-p", str(sock), "-t", str(state), "-f", str(tmp_path / "pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        yield sock
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a loaded machine: the reference agent is not under test
            proc.kill()
            proc.wait()


def test_ship_vm_client_syncs_past_stale_replies(qga_socket: Path) -> None:
    with QgaClient(qga_socket) as qga:
        # Leave junk and an unread reply in the stream, as a crashed earlier client would.
        qga.send_raw(b'{"execute": "guest-get-host-name"}\nhello\n')
        time.sleep(0.2)
        qga.sync()
        assert qga.execute("guest-ping") == {}
        with pytest.raises(QgaError) as err:
            qga.execute("guest-nope")
        assert err.value.error["class"] == "CommandNotFound"


def test_ship_vm_client_guest_exec(qga_socket: Path) -> None:
    with QgaClient(qga_socket) as qga:
        qga.sync()
        assert qga.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, "out\n", "err\n")


def test_ship_vm_shape_ignores_values() -> None:
    assert shape({"b": [{"x": 1}, {"x": 2}], "a": "s", "c": None, "d": True}) == {
        "a": "str",
        "b": [{"x": "number"}],
        "c": "null",
        "d": "bool",
    }
    assert shape([]) == []


def test_ship_vm_qemu_command_line(tmp_path: Path) -> None:
    vm = GuestVM(workdir=tmp_path, accel="tcg")
    cmd = vm._cmdline()
    text = " ".join(cmd)
    for name, (chardev, dev_id, sock) in PORTS.items():
        assert f"socket,id={chardev},path={tmp_path / sock},server=on,wait=off" in text
        assert f"chardev={chardev},name={name},id={dev_id}" in text
    assert "tcg,thread=multi" in text and "-nodefaults" in cmd and "qemu64" in cmd
    assert "systemd.mask=e2e-agent.service" in text
    custom = GuestVM(workdir=tmp_path, agent="custom", accel="tcg")._cmdline()
    assert "systemd.mask=qemu-guest-agent.service" in " ".join(custom)


def test_ship_vm_client_timeout_on_silent_peer(tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    try:
        silent = r"^(no reply from the agent|timed out)$"
        with QgaClient(path, timeout=0.5) as qga, pytest.raises(TimeoutError, match=silent):
            qga.sync()
    finally:
        server.close()


def test_ship_vm_differential_allows_newer_schema_members() -> None:
    from checks.qga_checks import without_newer

    agent = [{"name": "str", "total-bytes-privileged": "number", "disk": [{"bus": "number"}]}]
    assert without_newer(agent) == [{"name": "str", "disk": [{"bus": "number"}]}]

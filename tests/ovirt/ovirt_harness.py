"""oVirt/SSO test harness (uniquely named so test modules can import it next to other areas):
a vdsm-faithful host pumped over a real fd, fake peers, private D-Bus + logind mock, PAM checks.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from concierge.testing.context import FakeContext
from concierge.testing.fd_link import FrontEndHostNode
from concierge.testing.vdsm_host import VdsmHost

FRONTEND = "concierge.transport.ovirt:OvirtFrontEnd"
FAST = {"heartbeat_s": 0.2, "active_user_s": 0.2, "stale_window_s": 0.5, "request_timeout_s": 2.0}


class HostPump:
    """Moves bytes between one host-side fd and a :class:`VdsmHost` in a thread."""

    def __init__(self, fd: int, host: VdsmHost | None = None) -> None:
        self.fd = fd
        self.host = host or VdsmHost()
        self.lock = threading.Lock()
        self.write_lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.raw = bytearray()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_flag.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if self.stop_flag.is_set():
                return
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                with self.lock:
                    self.raw += data
                    self.host.chunk(data)
            self.flush()

    def flush(self) -> None:
        with self.write_lock:  # take and write as one step: lines leave in the order queued
            with self.lock:
                out = self.host.take_outbox()
            if out:
                os.write(self.fd, out)

    def send(self, name: str, **args: Any) -> None:
        with self.lock:
            self.host.send(name, **args)
        self.flush()

    def names(self) -> list[str]:
        with self.lock:
            return [name for name, _ in self.host.received]

    def wait(self, predicate: Callable[[VdsmHost], bool], timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if predicate(self.host):
                    return
            time.sleep(0.02)
        with self.lock:
            got = [n for n, _ in self.host.received]
            raise AssertionError(f"host condition not met; received {got[-40:]}, errors {self.host.errors}")

    def close(self) -> None:
        self.stop_flag.set()
        self.thread.join(2)


class FakePeers:
    """Monitor, sso and lifecycle answering with the documented shapes; records requests."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.user: dict[str, Any] = {"name": "alice", "locked": False}

    def monitor(self, type_: str, body: Any) -> Any:
        self.calls.append(("monitor", type_, body))
        answers: dict[str, Any] = {
            "monitor.memory": {
                "total": 8 << 30,
                "free": 4 << 30,
                "available": 6 << 30,
                "cached": 1 << 30,
                "buffers": 1 << 20,
                "swap_total": 2 << 30,
                "swap_free": 1 << 30,
                "swap_in": 10,
                "swap_out": 20,
                "pageflt": 1000,
                "majflt": 3,
            },
            "monitor.hostname": {"hostname": "web01", "fqdn": "web01.example.com"},
            "monitor.osinfo": {
                "kernel_release": "6.1.0-18-amd64",
                "machine": "x86_64",
                "name": "Debian GNU/Linux",
                "version_id": "12",
                "version_codename": "bookworm",
            },
            "monitor.timezone": {"zone": "Europe/Prague", "offset": 3600},
            "monitor.interfaces": {
                "interfaces": [
                    {
                        "name": "lo",
                        "hwaddr": "00:00:00:00:00:00",
                        "addresses": [{"family": "ipv4", "address": "127.0.0.1", "prefix": 8}],
                        "stats": {},
                    },
                    {
                        "name": "eth0",
                        "hwaddr": "52:54:00:12:34:56",
                        "addresses": [
                            {"family": "ipv4", "address": "192.168.1.10", "prefix": 24},
                            {"family": "ipv6", "address": "fe80::1", "prefix": 64},
                        ],
                        "stats": {},
                    },
                ]
            },
            "monitor.filesystems": {
                "filesystems": [
                    {
                        "name": "vda1",
                        "mountpoint": "/",
                        "type": "ext4",
                        "used_bytes": 1000,
                        "total_bytes": 5000,
                    },
                ]
            },
            "monitor.applications": {"applications": ["kernel-6.1", "concierge-0.1\x07"]},
            "monitor.cpus": {"count": 4},
            "monitor.containers": {"containers": []},
        }
        return answers[type_]

    def sso(self, type_: str, body: Any) -> Any:
        self.calls.append(("sso", type_, body))
        if type_ == "sso.active_user":
            return dict(self.user)
        return {}

    def lifecycle(self, type_: str, body: Any) -> Any:
        self.calls.append(("lifecycle", type_, body))
        return {}

    def of(self, actor: str, type_: str | None = None) -> list[Any]:
        return [b for a, t, b in self.calls if a == actor and (type_ is None or t == type_)]


def start_frontend(
    peers: FakePeers, *, fd: int | None = None, listen_fd: int | None = None, **settings: Any
) -> FakeContext:
    conf: dict[str, Any] = {"frontend": FRONTEND, **FAST, **settings}
    if fd is not None:
        conf["fd"] = fd
    if listen_fd is not None:
        conf["listen_fd"] = listen_fd
    ctx = FakeContext(
        "transport",
        conf,
        peers={"monitor": peers.monitor, "sso": peers.sso, "lifecycle": peers.lifecycle},
    )
    ctx.run_node(FrontEndHostNode)
    return ctx


@pytest.fixture
def peers() -> FakePeers:
    return FakePeers()


@pytest.fixture
def closers() -> Iterator[list[Callable[[], object]]]:
    todo: list[Callable[[], object]] = []
    yield todo
    for close in reversed(todo):
        close()


# --- D-Bus / logind / PAM fixtures for the sso tests ----------------------------------------------
import shutil  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

from concierge.testing import peers as peer_check  # noqa: E402
from concierge.testing.dbus import SYS_PYTHON, LogindMock, private_system_bus  # noqa: E402

PAM_WRAPPER = "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so"
PAM_PYTHON = "/lib/security/pam_python.so"
PAM_MATRIX = "/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so"


@pytest.fixture
def system_bus(tmp_path: Path) -> Iterator[str]:
    """A private dbus-daemon of the system type that lets anyone own and call anything."""
    with private_system_bus(tmp_path) as address:
        yield address


@pytest.fixture
def logind(system_bus: str) -> Iterator[LogindMock]:
    mock = LogindMock(system_bus)
    yield mock
    mock.close()


def require_pam_stack() -> None:
    """pam_wrapper + pam_python + pypamtest must be present (CI installs them)."""
    for path, pkg in (
        (PAM_WRAPPER, "libpam-wrapper"),
        (PAM_PYTHON, "libpam-python"),
        (PAM_MATRIX, "libpam-wrapper"),
    ):
        peer_check.require(os.path.exists(path), f"{path} missing (apt install {pkg})")
    peer_check.require(_imports("pypamtest"), "pypamtest missing (apt install python3-pypamtest)")
    assert shutil.which(SYS_PYTHON)


def _imports(module: str) -> bool:
    """True if the system python (the one with Debian's bindings) can import ``module``."""
    proc = subprocess.run([SYS_PYTHON, "-c", f"import {module}"], capture_output=True, check=False)
    return proc.returncode == 0

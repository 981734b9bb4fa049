"""Boot the cached Debian guest under QEMU with the three agent ports on host unix sockets.

One :class:`GuestVM` per boot: a throw-away qcow2 overlay over ``cache/base.img``, the guest's
own kernel and initrd, serial console to ``console.log``, QMP on a unix socket (``qemu.qmp``),
the source tree under test shared read-only over 9p (tag ``concierge``, ``$CONCIERGE_VM_SRC`` or
this checkout), this checkout (tag ``e2etools``: harness scripts and packaging/) and a per-boot
control share (tag ``e2e``) holding ``agent.sh``, the command ``e2e-agent.service`` runs.
KVM only when the CPU advertises vmx/svm and /dev/kvm opens; software emulation otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where a boot needs it: the libvirt run has no QMP of its own
    from qemu.qmp.legacy import QEMUMonitorProtocol

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CACHE = Path(os.environ.get("CONCIERGE_VM_CACHE", HERE / "cache"))
# The tree shared read-only with the guest as /opt/concierge (default: this checkout).
SOURCE = Path(os.environ.get("CONCIERGE_VM_SRC", ROOT))

# port name -> (chardev id, device id used in QMP VSERPORT_CHANGE events, socket file name)
PORTS: dict[str, tuple[str, str, str]] = {
    "org.qemu.guest_agent.0": ("qga0", "port-qga", "qga.sock"),
    "com.redhat.spice.0": ("spice0", "port-spice", "spice.sock"),
    "ovirt-guest-agent.0": ("ovirt0", "port-ovirt", "ovirt.sock"),
}

# Which agent the guest runs: masks on the kernel command line switch the units.
STOCK = "stock"
CUSTOM = "custom"


def kvm_usable() -> bool:
    """KVM only with hardware virtualisation flags: the nested /dev/kvm here cannot boot Linux."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    if " vmx" not in flags and " svm" not in flags:
        return False
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


@dataclass
class GuestVM:
    """One boot of the e2e guest; use as a context manager (always kills QEMU, keeps logs)."""

    workdir: Path
    agent: str = STOCK
    agent_script: str = ""
    accel: str = "auto"
    memory_mb: int = 1024
    cpus: int = int(os.environ.get("CONCIERGE_VM_CPUS", "2"))
    cpu_model: str = os.environ.get("CONCIERGE_VM_CPU", "qemu64")  # TCG: ~40% faster boot than max
    proc: subprocess.Popen[bytes] | None = None
    qmp: QEMUMonitorProtocol | None = None
    started_at: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)
    port_open: dict[str, bool] = field(default_factory=dict)

    def socket(self, port: str) -> Path:
        """Host-side unix socket of a guest port."""
        return self.workdir / PORTS[port][2]

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"

    def _cmdline(self) -> list[str]:
        accel = self.accel
        if accel == "auto":
            accel = "kvm" if kvm_usable() else "tcg"
        append = [
            "root=/dev/vda",
            "rw",
            "console=ttyS0",
            "quiet",
            "loglevel=3",
            "systemd.show_status=0",
            "net.ifnames=0",
        ]
        if self.agent == STOCK:
            append.append("systemd.mask=e2e-agent.service")
        else:
            append.append("systemd.mask=qemu-guest-agent.service")
        cmd = [
            shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
            "-name",
            "concierge-e2e",
            "-machine",
            "q35" + (",accel=kvm" if accel == "kvm" else ""),
            *(["-accel", "tcg,thread=multi"] if accel == "tcg" else []),
            "-cpu",
            "host" if accel == "kvm" else self.cpu_model,
            "-smp",
            str(self.cpus),
            "-m",
            str(self.memory_mb),
            # -nodefaults: no CD-ROM, VGA or NIC to probe (the SATA CD-ROM alone costs seconds).
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-kernel",
            str(CACHE / "vmlinuz"),
            "-initrd",
            str(CACHE / "initrd.img"),
            "-append",
            " ".join(append),
            "-drive",
            f"file={self.workdir / 'overlay.qcow2'},if=virtio,format=qcow2",
            "-serial",
            f"file:{self.console}",
            "-qmp",
            f"unix:{self.workdir / 'qmp.sock'},server=on,wait=off",
            "-device",
            "virtio-serial-pci,id=vser0",
            "-virtfs",
            f"local,path={SOURCE},mount_tag=concierge,security_model=none,readonly=on",
            # This checkout (harness scripts, packaging/), even when SOURCE is another tree.
            "-virtfs",
            f"local,path={ROOT},mount_tag=e2etools,security_model=none,readonly=on",
            "-virtfs",
            f"local,path={self.workdir / 'ctl'},mount_tag=e2e,security_model=none",
        ]
        for name, (chardev, dev_id, sock) in PORTS.items():
            path = self.workdir / sock
            cmd += [
                "-chardev",
                f"socket,id={chardev},path={path},server=on,wait=off",
                "-device",
                f"virtserialport,bus=vser0.0,chardev={chardev},name={name},id={dev_id}",
            ]
        return cmd

    def start(self) -> None:
        """Create the overlay and control share, start QEMU, connect QMP."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "ctl").mkdir(exist_ok=True)
        (self.workdir / "ctl" / "agent.sh").write_text(self.agent_script or "exit 0\n")
        overlay = self.workdir / "overlay.qcow2"
        overlay.unlink(missing_ok=True)
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(CACHE / "base.img"), str(overlay)],
            check=True,
        )
        self.started_at = time.monotonic()
        log = (self.workdir / "qemu.log").open("wb")
        self.proc = subprocess.Popen(self._cmdline(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not (self.workdir / "qmp.sock").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"QEMU did not start: {(self.workdir / 'qemu.log').read_text()}")
            time.sleep(0.02)
        from qemu.qmp.legacy import QEMUMonitorProtocol

        self.qmp = QEMUMonitorProtocol(str(self.workdir / "qmp.sock"))
        self.qmp.connect()

    def poll_events(self, wait: float = 0.0) -> list[dict[str, Any]]:
        """Collect QMP events (port open/close, SHUTDOWN), tracking port state.

        ``get_events(wait)`` returns one event when it had to wait for it; the rest stay queued
        and are drained with non-waiting calls (never ``clear_events``, which would drop them).
        """
        assert self.qmp is not None
        new: list[dict[str, Any]] = []
        try:
            new += self.qmp.get_events(wait=wait) if wait else self.qmp.get_events()
            while batch := self.qmp.get_events():
                new += batch
        except Exception:  # noqa: BLE001, S110 - a QMP timeout or a closed QMP: nothing new
            pass
        for event in new:
            self.events.append(event)
            if event.get("event") == "VSERPORT_CHANGE":
                self.port_open[event["data"]["id"]] = bool(event["data"]["open"])
        return new

    def wait_port(self, port: str, *, open_: bool = True, timeout: float = 60.0, since: int | None = None) -> float:
        """Wait until the guest opens (or closes) ``port``; returns seconds since QEMU started.

        With ``since`` (an index into :attr:`events`), any such change after that point counts,
        even if the port flipped back before we looked (a close quickly followed by a reopen).
        """
        dev_id = PORTS[port][1]
        deadline = time.monotonic() + timeout

        def seen() -> bool:
            if since is None:
                return self.port_open.get(dev_id, False) == open_
            return any(
                e.get("event") == "VSERPORT_CHANGE" and e["data"]["id"] == dev_id and bool(e["data"]["open"]) == open_
                for e in self.events[since:]
            )

        while not seen():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{port} not {'opened' if open_ else 'closed'} in {timeout} s")
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("QEMU exited")
            self.poll_events(wait=0.2)
        return time.monotonic() - self.started_at

    def wait_exit(self, timeout: float = 60.0) -> float:
        """Wait for QEMU to exit (the guest powered off); returns the time it took."""
        assert self.proc is not None
        start = time.monotonic()
        self.proc.wait(timeout=timeout)
        return time.monotonic() - start

    def console_tail(self, lines: int = 30) -> str:
        """The last lines of the serial console, for failure reports."""
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Quit QEMU if still running (QMP quit, then kill)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if self.qmp is not None:
                with contextlib.suppress(Exception):  # QEMU may already be going away
                    self.qmp.cmd("quit")
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.qmp is not None:
            with contextlib.suppress(Exception):  # closing a dead socket
                self.qmp.close()
        (self.workdir / "overlay.qcow2").unlink(missing_ok=True)

    def __enter__(self) -> GuestVM:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""libvirt as the host: its daemons started here (no systemd needed), the e2e guest as a transient
domain with the guest agent channel wired the way libvirt wires it, and `virsh` to talk to it.

Nothing here speaks QGA itself: every request goes through libvirt (``virsh qemu-agent-command``,
``virsh guestinfo`` ...), exactly as OpenStack Nova, KubeVirt or virt-manager would send it.
The domain is transient (``virsh create``), so a guest that powers off leaves nothing defined.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from vm import CACHE, ROOT, SOURCE, kvm_usable

URI = "qemu:///system"
QGA_PORT = "org.qemu.guest_agent.0"


def virsh(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run one virsh command against the system daemon; never raises on a non-zero exit."""
    return subprocess.run(
        ["virsh", "-q", "-c", URI, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class LibvirtDaemons:
    """libvirtd and virtlogd in the foreground, as children of this process, unless a daemon
    already answers (then it is used and left running)."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    @staticmethod
    def answering() -> bool:
        try:
            return virsh("version", timeout=10).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def start(self) -> str:
        """Returns the daemon versions line for the report."""
        if not self.answering():
            for daemon in ("virtlogd", "libvirtd"):
                exe = shutil.which(daemon) or f"/usr/sbin/{daemon}"
                log = (self.logdir / f"{daemon}.log").open("wb")
                self.procs.append(
                    subprocess.Popen([exe], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
                )
            deadline = time.monotonic() + 30
            while not self.answering():
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                    tail = (self.logdir / "libvirtd.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"libvirtd did not come up: {tail}")
                time.sleep(0.2)
        out = virsh("version", timeout=10).stdout
        return " / ".join(line.strip() for line in out.splitlines() if line.strip())

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()


@dataclass
class EventLog:
    """`virsh event --loop` for agent-lifecycle events, read on a thread into a list."""

    domain: str
    lines: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "virsh",
                "-q",
                "-c",
                URI,
                "event",
                "--domain",
                self.domain,
                "--event",
                "agent-lifecycle",
                "--loop",
                "--timestamp",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.lines.append(line.strip())

    def states(self, since: int = 0) -> list[str]:
        """'connected'/'disconnected' in order, from line ``since`` on."""
        out = []
        for line in self.lines[since:]:
            for state in ("disconnected", "connected"):
                if f"state: '{state}'" in line or f"state: {state}" in line:
                    out.append(state)
                    break
        return out

    def wait_for(self, sequence: list[str], since: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.states(since)
            it = iter(seen)
            if all(any(s == want for s in it) for want in sequence):
                return seen
            time.sleep(0.2)
        raise TimeoutError(f"agent-lifecycle {sequence} not seen in {timeout:.0f} s: {self.lines[since:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)


@dataclass
class LibvirtGuest:
    """One boot of the e2e image as a transient libvirt domain."""

    workdir: Path
    name: str
    agent: str  # "stock" or "concierge": which unit the kernel command line masks
    agent_script: str = ""
    memory_mb: int = 1024
    cpus: int = int(os.environ.get("CONCIERGE_VM_CPUS", "2"))
    started_at: float = 0.0
    events: EventLog | None = None

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"

    def xml(self) -> str:
        accel_kvm = kvm_usable()
        mask = "e2e-agent.service" if self.agent == "stock" else "qemu-guest-agent.service"
        cmdline = (
            f"root=/dev/vda rw console=ttyS0 quiet loglevel=3 systemd.show_status=0 net.ifnames=0 systemd.mask={mask}"
        )
        shares = [(SOURCE, "concierge", True), (ROOT, "e2etools", True), (self.workdir / "ctl", "e2e", False)]
        fs = "".join(
            f"<filesystem type='mount' accessmode='{'passthrough' if ro else 'mapped'}'>"
            f"<source dir='{escape(str(src))}'/>"
            f"<target dir='{tag}'/>{'<readonly/>' if ro else ''}</filesystem>"
            for src, tag, ro in shares
        )
        cpu = (
            "<cpu mode='host-passthrough'/>"
            if accel_kvm
            else ("<cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>")
        )
        return f"""<domain type='{"kvm" if accel_kvm else "qemu"}'>
  <name>{self.name}</name>
  <memory unit='MiB'>{self.memory_mb}</memory>
  <vcpu>{self.cpus}</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{CACHE / "vmlinuz"}</kernel><initrd>{CACHE / "initrd.img"}</initrd>
    <cmdline>{escape(cmdline)}</cmdline></os>
  <features><acpi/></features>
  {cpu}
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>{shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"}</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{self.workdir / "overlay.qcow2"}'/><target dev='vda' bus='virtio'/></disk>
    {fs}
    <controller type='usb' model='none'/>
    <controller type='virtio-serial' index='0'/>
    <serial type='file'><source path='{self.console}'/><target port='0'/></serial>
    <channel type='unix'><target type='virtio' name='{QGA_PORT}'/></channel>
    <memballoon model='none'/>
  </devices>
</domain>
"""

    def start(self) -> None:
        """Overlay, control share, `virsh create`, and the agent-lifecycle event reader."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        # QEMU runs as libvirt's unprivileged user: it must reach the overlay, console and shares
        os.chmod(self.workdir, 0o755)  # noqa: S103 - a throw-away test directory, nothing secret
        ctl = self.workdir / "ctl"
        ctl.mkdir(exist_ok=True)
        with contextlib.suppress(KeyError, LookupError):  # the guest writes agent.log as QEMU's user
            shutil.chown(ctl, user="libvirt-qemu")
        (ctl / "agent.sh").write_text(self.agent_script or "exit 0\n")
        overlay = self.workdir / "overlay.qcow2"
        overlay.unlink(missing_ok=True)
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(CACHE / "base.img"), str(overlay)],
            check=True,
        )
        (self.workdir / "domain.xml").write_text(self.xml())
        virsh("destroy", self.name, timeout=30)  # a leftover of an interrupted run
        self.started_at = time.monotonic()
        created = virsh("create", str(self.workdir / "domain.xml"), timeout=120)
        if created.returncode != 0:
            raise RuntimeError(f"virsh create failed: {created.stderr.strip()}")
        self.events = EventLog(self.name)
        self.events.start()

    def agent_command(self, command: dict[str, Any], timeout: int = 30) -> dict[str, Any]:
        """`virsh qemu-agent-command`; returns the decoded reply (raises on a libvirt error)."""
        done = virsh(
            "qemu-agent-command", self.name, "--timeout", str(timeout), json.dumps(command), timeout=timeout + 30
        )
        if done.returncode != 0:
            raise RuntimeError(f"qemu-agent-command {command.get('execute')}: {done.stderr.strip()}")
        reply: dict[str, Any] = json.loads(done.stdout)
        return reply

    def wait_agent(self, timeout: float) -> float:
        """Until the agent answers a ping through libvirt; returns seconds since `virsh create`."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            done = virsh("qemu-agent-command", self.name, "--timeout", "5", '{"execute":"guest-ping"}', timeout=40)
            if done.returncode == 0:
                return time.monotonic() - self.started_at
            last = done.stderr.strip()
            time.sleep(1.0)
        raise TimeoutError(f"the guest agent did not answer through libvirt in {timeout:.0f} s: {last}")

    def guest_spawn(self, argv: list[str]) -> None:
        """guest-exec without waiting for its end: for commands that restart or kill the agent
        itself (its exit status could never be collected)."""
        self.agent_command({"execute": "guest-exec", "arguments": {"path": argv[0], "arg": argv[1:]}})

    def guest_run(self, argv: list[str], timeout: float = 60.0) -> tuple[int, str, str]:
        """guest-exec through libvirt, waiting for the exit (as a host tool would)."""
        import base64

        pid = self.agent_command(
            {"execute": "guest-exec", "arguments": {"path": argv[0], "arg": argv[1:], "capture-output": True}}
        )["return"]["pid"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.agent_command({"execute": "guest-exec-status", "arguments": {"pid": pid}})["return"]
            if status.get("exited"):
                out = base64.b64decode(status.get("out-data", "")).decode(errors="replace")
                err = base64.b64decode(status.get("err-data", "")).decode(errors="replace")
                return int(status.get("exitcode", -1)), out, err
            time.sleep(0.3)
        raise TimeoutError(f"guest-exec {argv} did not finish in {timeout:.0f} s")

    def running(self) -> bool:
        return virsh("domstate", self.name, timeout=30).stdout.strip() == "running"

    def wait_gone(self, timeout: float) -> float:
        """Until the transient domain is gone (the guest powered off); seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if virsh("domstate", self.name, timeout=30).returncode != 0:
                return time.monotonic() - start
            time.sleep(0.5)
        raise TimeoutError(f"domain {self.name} still there after {timeout:.0f} s")

    def console_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.console.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.events is not None:
            self.events.stop()
        virsh("destroy", self.name, timeout=60)
        (self.workdir / "overlay.qcow2").unlink(missing_ok=True)

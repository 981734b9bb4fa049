"""Runs inside a private mount namespace (``unshare -m``) on behalf of the monitor tests, so
the hanging FUSE mount or the loop-mounted filesystem is invisible to the rest of the machine.

Usage: ``python monitor_ns_script.py fuse-hang|loop-mount|agent-mounts WORKDIR`` -> one JSON object on
stdout. Never run it outside a private mount namespace.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from concierge.actors.monitor.node import MonitorNode
from concierge.testing.context import FakeContext
from concierge.transport.qga.commands.monitor import render_disks, render_fsinfo

MNT_DETACH = 2


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def fuse_hang(work: Path) -> dict[str, Any]:
    """Mount a FUSE fs whose server never answers, then probe around it."""
    mnt = work / "hang"
    mnt.mkdir()
    fd = os.open("/dev/fuse", os.O_RDWR)
    opts = f"fd={fd},rootmode=40000,user_id=0,group_id=0".encode()
    if _libc().mount(b"concierge-hang", str(mnt).encode(), b"fuse", 0, opts) != 0:
        return {"error": f"mount failed: errno {ctypes.get_errno()}"}
    out: dict[str, Any] = {"mountpoint": str(mnt)}
    ctx = FakeContext("monitor", {"probe_timeout_s": 1.5})
    try:
        ctx.run_node(MonitorNode)
        first: dict[str, Any] = {}

        def slow() -> None:
            started = time.monotonic()
            first["reply"] = ctx.ask("monitor.filesystems", {"scope": "all"}, timeout_s=30)
            first["seconds"] = time.monotonic() - started

        worker = threading.Thread(target=slow)
        worker.start()
        time.sleep(0.2)  # let the statvfs get stuck
        others = {}
        for kind in (
            "monitor.osinfo",
            "monitor.memory",
            "monitor.interfaces",
            "monitor.disks",
            "monitor.load",
            "monitor.users",
        ):
            reply = ctx.ask(kind, None, timeout_s=10)
            others[kind] = reply.ok
        out["others_ok_while_stuck"] = others
        out["first_pending_after_others"] = worker.is_alive()
        worker.join(30)
        out["first_timed_out"] = first["reply"].body["timed_out"]
        out["first_seconds"] = first["seconds"]
        out["health_after_first"] = list(ctx.health)
        started = time.monotonic()
        second = ctx.ask("monitor.filesystems", {"scope": "all"}, timeout_s=30)
        out["second_seconds"] = time.monotonic() - started
        out["second_timed_out"] = second.body["timed_out"]
        block = ctx.ask("monitor.filesystems", None, timeout_s=30)
        out["block_scope_mountpoints"] = [f["mountpoint"] for f in block.body["filesystems"]]
        os.close(fd)  # abort the connection: the stuck statvfs returns ENOTCONN
        fd = -1
        deadline = time.monotonic() + 10
        third = ctx.ask("monitor.filesystems", {"scope": "all"}, timeout_s=30)
        while str(mnt) in third.body["timed_out"] and time.monotonic() < deadline:
            time.sleep(0.1)
            third = ctx.ask("monitor.filesystems", {"scope": "all"}, timeout_s=30)
        out["third_timed_out"] = third.body["timed_out"]
        out["third_has_mount"] = any(f["mountpoint"] == str(mnt) for f in third.body["filesystems"])
    finally:
        if fd >= 0:
            os.close(fd)
        _libc().umount2(str(mnt).encode(), MNT_DETACH)
        ctx.close()
    return out


def loop_mount(work: Path, qga_binary: str) -> dict[str, Any]:
    """Mount an ext4 image through a loop device; compare with qemu-ga in this namespace."""
    image, mnt = work / "fs.img", work / "loopmnt"
    mnt.mkdir()
    with open(image, "wb") as handle:
        handle.truncate(16 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    out: dict[str, Any] = {"mountpoint": str(mnt)}
    ctx = FakeContext("monitor", {})
    qga = None
    try:
        ctx.run_node(MonitorNode)
        before = ctx.ask("monitor.filesystems", None).body
        out["before"] = [f["mountpoint"] for f in before["filesystems"]]
        subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
        after = ctx.ask("monitor.filesystems", None).body
        out["after"] = after["filesystems"]
        sock, state = work / "qga.sock", work / "qga-state"
        state.mkdir()
        qga = subprocess.Popen(
            [qga_binary, "-m", "unix-listen", "-p", str(sock), "-t", str(state)], stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(str(sock))
        stream = conn.makefile("rwb")
        stream.write(b'{"execute": "guest-get-fsinfo"}\n')
        stream.flush()
        out["qga"] = json.loads(stream.readline())["return"]
        out["ours"] = render_fsinfo(ctx.ask("monitor.filesystems", None).body)
        stream.write(b'{"execute": "guest-get-disks"}\n')
        stream.flush()
        out["qga_disks"] = json.loads(stream.readline())["return"]
        out["ours_disks"] = render_disks(ctx.ask("monitor.disks", None).body)
        conn.close()
        subprocess.run(["umount", str(mnt)], check=True)
        gone = ctx.ask("monitor.filesystems", None).body
        out["after_umount"] = [f["mountpoint"] for f in gone["filesystems"]]
        deadline = time.monotonic() + 5  # autoclear detaches the loop device asynchronously
        while time.monotonic() < deadline:
            disks = [d["name"] for d in ctx.ask("monitor.disks", None).body]
            if len(disks) < len(out["ours_disks"]):
                break
            time.sleep(0.05)
        out["disks_after_umount"] = disks
    finally:
        if qga is not None:
            qga.terminate()
            qga.wait(5)
        subprocess.run(["umount", str(mnt)], check=False, capture_output=True)
        ctx.close()
    return out


def agent_mounts(work: Path) -> dict[str, Any]:
    """Bind-mount a block-backed directory over a configured state dir and over
    ``$STATE_DIRECTORY`` (what systemd does for ``StateDirectory=``): neither may be listed."""
    image, disk, state, env_state = work / "fs.img", work / "disk", work / "state", work / "env-state"
    for path in (disk, state, env_state):
        path.mkdir()
    with open(image, "wb") as handle:
        handle.truncate(16 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(disk)], check=True)
    (disk / "a").mkdir()
    (disk / "b").mkdir()
    subprocess.run(["mount", "--bind", str(disk / "a"), str(state)], check=True)
    subprocess.run(["mount", "--bind", str(disk / "b"), str(env_state)], check=True)
    os.environ["STATE_DIRECTORY"] = str(env_state)
    ctx = FakeContext("monitor", {"hidden_mounts": [str(state)]})
    out: dict[str, Any] = {"disk": str(disk), "hidden": [str(state), str(env_state)]}
    try:
        ctx.run_node(MonitorNode)
        for scope in ("block", "all"):
            body = ctx.ask("monitor.filesystems", {"scope": scope}).body
            out[scope] = [f["mountpoint"] for f in body["filesystems"]]
    finally:
        for path in (env_state, state, disk):
            subprocess.run(["umount", str(path)], check=False, capture_output=True)
        ctx.close()
    return out


def main() -> None:
    """Dispatch on the mode argument."""
    mode, work = sys.argv[1], Path(sys.argv[2])
    if mode == "agent-mounts":
        result = agent_mounts(work)
    else:
        result = fuse_hang(work) if mode == "fuse-hang" else loop_mount(work, sys.argv[3])
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # a stuck probe thread must not keep the namespace alive


if __name__ == "__main__":
    main()

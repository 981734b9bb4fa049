"""Session-actor benchmarks: clipboard latency both ways (1 KiB, 1 MiB) against real Xvfb +
xclip, MONITORS_CONFIG -> REPLY and -> layout visible on Xorg + dummy, and the memory of one
process hosting the five session nodes, next to the stock spice-vdagent (measured here when
installed; latency anchors from docs/reference spice.md §3.4, same machine class).

Run: ``PYTHONPATH=src .venv/bin/python tools/bench/bench_session.py`` (markdown on stdout).
Not a test: numbers vary with machine load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stock_vdagent import StockHost

from concierge.runtime.node import Incoming
from concierge.testing.context import FakeContext
from concierge.testing.xservers import XORG_DUMMY_CONF


class BenchContext(FakeContext):
    """FakeContext whose casts wake waiters (with blobs and a timestamp)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cond = threading.Condition()
        self.log: list[tuple[float, str, Any, bytes]] = []
        self.on_cast: Any = None

    def cast(
        self,
        dst: str,
        type: str,
        body: Any = None,
        *,
        blobs: tuple[bytes, ...] = (),
        **kwargs: Any,
    ) -> None:
        now = time.perf_counter()
        kind = body.get("type", type) if isinstance(body, dict) and type == "spice.send" else type
        inner = body.get("body") if isinstance(body, dict) and type == "spice.send" else body
        if self.on_cast is not None:
            self.on_cast(kind, inner)
        with self.cond:
            self.log.append((now, kind, inner, b"".join(blobs)))
            self.cond.notify_all()

    def wait_for(self, kind: str, after: int, timeout: float = 30) -> tuple[float, Any, bytes]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for when, k, inner, data in self.log[after:]:
                    if k == kind:
                        return when, inner, data
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(kind)
                self.cond.wait(left)

    def deliver(self, type_: str, body: Any, blobs: tuple[bytes, ...] = ()) -> None:
        msg = Incoming(kind="cast", type=type_, body=body, src="session", blobs=blobs)
        self.call_soon(lambda: self.node.handle(msg))  # type: ignore[union-attr]


def start_x(argv: list[str], display: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not os.path.exists(f"/tmp/.X11-unix/X{display}"):
        if proc.poll() is not None:
            raise RuntimeError(f"X server :{display} failed")
        time.sleep(0.02)
    time.sleep(0.1)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def p50(values: list[float]) -> float:
    return statistics.median(values)


def fmt(values: list[float], unit: str = "ms") -> str:
    ordered = sorted(values)
    return f"p50 {p50(values):.2f} {unit} (min {ordered[0]:.2f}, max {ordered[-1]:.2f}, n={len(values)})"


class ConciergeHost:
    """The fake client side of our ClipboardNode (in-process)."""

    name = "concierge"

    def __init__(self, display: str) -> None:
        from concierge.actors.clipboard.node import ClipboardNode

        self.ctx = BenchContext("clipboard", {"backend": "x11", "x11_display": display})
        self.ctx.run_node(ClipboardNode)
        self.ctx.deliver("spice.announce_capabilities", {"request": 1, "caps": [(1 << 5) | (1 << 6)]})

    def mark(self) -> int:
        return len(self.ctx.log)

    def grab(self) -> None:
        self.ctx.deliver("spice.clipboard_grab", {"selection": 0, "types": [1]})

    def answer(self, data: bytes | None) -> None:
        chunks = tuple(data[i : i + 65536] for i in range(0, len(data), 65536)) if data else ()
        self.ctx.on_cast = (
            None
            if data is None
            else (
                lambda kind, inner: (
                    kind == "clipboard_request"
                    and self.ctx.deliver("spice.clipboard", {"selection": 0, "type": 1}, chunks)
                )
            )
        )

    def request_time(self, mark: int) -> float:
        return self.ctx.wait_for("clipboard_request", mark)[0]

    def grab_time(self, mark: int) -> float:
        return self.ctx.wait_for("clipboard_grab", mark)[0]

    def ask(self) -> tuple[float, float, bytes]:
        mark = self.mark()
        t0 = time.perf_counter()
        self.ctx.deliver("spice.clipboard_request", {"selection": 0, "type": 1})
        t_data, _, payload = self.ctx.wait_for("clipboard", mark)
        return t0, t_data, payload

    def close(self) -> None:
        self.ctx.close()


def bench_clipboard(hosts: list[Any], display: str, reps: dict[int, int]) -> dict[str, dict[str, list[float]]]:
    """The same scenario for every host, interleaved rep by rep (so machine load hits all
    alike): client->app pastes (each host re-grabs before its paste), then app->client
    requests against one xclip owner that every agent has seen."""
    out: dict[str, dict[str, list[float]]] = {h.name: {} for h in hosts}

    def add(host: Any, key: str, value: float) -> None:
        out[host.name].setdefault(key, []).append(value)

    for size, count in reps.items():
        data = (os.urandom(size).hex().encode())[:size]
        label = "1 KiB" if size == 1024 else "1 MiB"
        for _ in range(count):
            for host in hosts:
                host.grab()
                time.sleep(0.15)  # ownership settles (unmeasured)
                host.answer(data)
                mark = host.mark()
                t0 = time.perf_counter()
                proc = subprocess.Popen(
                    ["xclip", "-d", display, "-o", "-selection", "clipboard", "-t", "UTF8_STRING"],
                    stdout=subprocess.PIPE,
                )
                got = proc.communicate(timeout=30)[0]
                t_end = time.perf_counter()
                t_req = host.request_time(mark)
                host.answer(None)
                assert got == data, f"{host.name}: host->guest data mismatch"
                add(host, f"host→app {label}: REQUEST → app has all data", (t_end - t_req) * 1000)
                add(
                    host,
                    f"host→app {label}: paste end-to-end (xclip spawn → EOF)",
                    (t_end - t0) * 1000,
                )
        marks = [host.mark() for host in hosts]
        owner = subprocess.Popen(
            ["xclip", "-d", display, "-quiet", "-i", "-selection", "clipboard"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert owner.stdin is not None
        t0 = time.perf_counter()
        owner.stdin.write(data)
        owner.stdin.close()
        for host, mark in zip(hosts, marks, strict=True):
            add(
                host,
                f"guest→host {label}: app owns (stdin closed) → GRAB at host",
                (host.grab_time(mark) - t0) * 1000,
            )
        time.sleep(0.3)  # every agent has seen the final owner (the other agent owned it before)
        for _ in range(count):
            for host in hosts:
                t_ask, t_data, payload = host.ask()
                if payload != data:  # counted and shown, not timed (seen once with the stock agent)
                    add(host, f"guest→host {label}: answers with wrong data (count)", 1.0)
                    continue
                add(
                    host,
                    f"guest→host {label}: REQUEST → CLIPBOARD data at host",
                    (t_data - t_ask) * 1000,
                )
        owner.kill()
        owner.wait()
    return out


def baseline(display: str, data: bytes, count: int) -> list[float]:
    """The same paste from a local xclip owner: the machine's load factor for this run."""
    owner = subprocess.Popen(
        ["xclip", "-d", display, "-quiet", "-i", "-selection", "secondary"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert owner.stdin is not None
    owner.stdin.write(data)
    owner.stdin.close()
    argv = ["xclip", "-d", display, "-o", "-selection", "secondary"]
    while subprocess.run(argv, capture_output=True, check=False).stdout != data:
        time.sleep(0.01)
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append((time.perf_counter() - t0) * 1000)
    owner.kill()
    owner.wait()
    return times


def bench_display(display: str, count: int) -> dict[str, list[float]]:
    from Xlib import display as xdisplay

    from concierge.actors.display.node import DisplayNode

    ctx = BenchContext("display", {"backend": "x11", "x11_display": display})
    ctx.run_node(DisplayNode)
    probe: Any = xdisplay.Display(display)
    root = probe.screen().root

    def layout_visible(width: int) -> bool:
        return bool(root.xrandr_get_screen_resources()) and root.get_geometry().width == width

    layouts = [
        (
            [
                {"width": 1280, "height": 800, "x": 0, "y": 0},
                {"width": 1024, "height": 768, "x": 1280, "y": 0},
            ],
            2304,
        ),
        (
            [
                {"width": 1024, "height": 768, "x": 0, "y": 0},
                {"width": 1280, "height": 800, "x": 1024, "y": 0},
                {"width": 800, "height": 600, "x": 2304, "y": 0},
            ],
            3104,
        ),
    ]
    reply_ms, visible_ms, xrandr_ms = [], [], []
    try:
        for i in range(count):
            mons, width = layouts[i % 2]
            body = {
                "num_of_monitors": len(mons),
                "flags": 1,
                "monitors": [dict(m, depth=32) for m in mons],
            }
            mark = len(ctx.log)
            t0 = time.perf_counter()
            ctx.deliver("spice.monitors_config", body)
            t_reply, reply, _ = ctx.wait_for("reply", mark)
            assert reply["error"] == 1, reply
            reply_ms.append((t_reply - t0) * 1000)
            while not layout_visible(width):
                time.sleep(0.0002)
            visible_ms.append((time.perf_counter() - t0) * 1000)
            mons, width = layouts[(i + 1) % 2]
            body = {
                "num_of_monitors": len(mons),
                "flags": 1,
                "monitors": [dict(m, depth=32) for m in mons],
            }
            t0 = time.perf_counter()
            ctx.deliver("spice.monitors_config", body)
            while (
                f"current {width} x"
                not in subprocess.run(
                    ["xrandr", "-d", display, "--query"], capture_output=True, text=True, check=True
                ).stdout
            ):
                pass
            xrandr_ms.append((time.perf_counter() - t0) * 1000)
    finally:
        probe.close()
        ctx.close()
    return {
        "monitors config → REPLY at host": reply_ms,
        "monitors config → layout visible (Xlib poll)": visible_ms,
        "monitors config → layout visible in `xrandr --query` (incl. spawn)": xrandr_ms,
    }


def memory(pid: int) -> tuple[float, float]:
    rss = pss = 0.0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Pss:"):
            pss = int(line.split()[1]) / 1024
    return rss, pss


def host_main(display: str, ready: str, which: str = "all") -> None:
    """Child process: the session nodes (all, or one) as a session process would host them."""
    import importlib

    import zmq  # noqa: F401  # the real runtime loads pyzmq too: count it

    tmp = str(Path(ready).parent)  # the parent's temp dir: removed by the parent
    nodes: dict[str, tuple[str, dict[str, Any]]] = {
        "display": ("DisplayNode", {"backend": "x11", "x11_display": display}),
        "clipboard": ("ClipboardNode", {"backend": "x11", "x11_display": display}),
        "effects": ("EffectsNode", {"journal": f"{tmp}/j.json"}),
        "filexfer": ("FileXferNode", {"directory": tmp}),
        "audio": ("AudioNode", {}),
    }
    ctxs: dict[str, BenchContext] = {}
    for name, (cls, settings) in nodes.items():
        if which in ("all", name):  # import only what this process hosts
            module = importlib.import_module(f"concierge.actors.{name}.node")
            ctxs[name] = BenchContext(name, settings)
            ctxs[name].run_node(getattr(module, cls))
    Path(ready).write_text("up")
    clip = ctxs.get("clipboard")
    if clip is not None:
        clip.deliver("spice.announce_capabilities", {"request": 1, "caps": [(1 << 5) | (1 << 6)]})
        data = b"y" * (1 << 20)
        clip.deliver("spice.clipboard_grab", {"selection": 0, "types": [1]})
        clip.on_cast = lambda kind, inner: (
            kind == "clipboard_request" and clip.deliver("spice.clipboard", {"selection": 0, "type": 1}, (data,))
        )
        time.sleep(0.3)
        for _ in range(3):
            subprocess.run(
                ["xclip", "-d", display, "-o", "-selection", "clipboard"],
                capture_output=True,
                check=True,
            )
    Path(ready).write_text("worked")
    time.sleep(3600)


def hosted_memory(display: str, which: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """(idle, after clipboard work) RSS/PSS of a child hosting ``which`` node(s)."""
    with tempfile.TemporaryDirectory(prefix="cc-bench-mem-") as tmp:
        ready = f"{tmp}/ready"
        child = subprocess.Popen(
            [sys.executable, __file__, "--host", display, ready, which],
            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src")),
        )
        try:
            while not (Path(ready).exists() and Path(ready).read_text() in ("up", "worked")):
                time.sleep(0.05)
            time.sleep(0.5)
            idle = memory(child.pid)
            while Path(ready).read_text() != "worked":
                time.sleep(0.05)
            return idle, memory(child.pid)
        finally:
            child.kill()
            child.wait()


XFER_MIB = 8
XFER_ROW = "file transfer 8 MiB in 64 KiB DATA → SUCCESS (MB/s, higher is better; ours without port or IPC hop)"


def xfer_ours(count: int) -> list[float]:
    """8 MiB in 64 KiB FILE_XFER_DATA messages -> SUCCESS, MB/s (FileXferNode in-process)."""
    from concierge.actors.filexfer.node import FileXferNode

    rates = []
    chunk = os.urandom(64 * 1024)
    with tempfile.TemporaryDirectory(prefix="cc-bench-xfer-") as tmp:
        ctx = BenchContext("filexfer", {"directory": tmp, "reserve_bytes": 0})
        ctx.run_node(FileXferNode)
        try:
            for n in range(count):
                size = XFER_MIB << 20
                mark = len(ctx.log)
                t0 = time.perf_counter()
                ctx.deliver("spice.file_xfer_start", {"id": n, "name": f"f{n}.bin", "size": size})
                ctx.wait_for("file_xfer_status", mark)
                for _ in range(size // len(chunk)):
                    ctx.deliver("spice.file_xfer_data", {"id": n, "size": len(chunk)}, (chunk,))
                while True:
                    _, status, _ = ctx.wait_for("file_xfer_status", mark + 1)
                    if status["id"] == n:
                        break
                    mark += 1
                assert status["result"] == 3, status
                rates.append(size / (time.perf_counter() - t0) / 1e6)
                os.unlink(os.path.join(tmp, f"f{n}.bin"))
        finally:
            ctx.close()
    return rates


def xfer_stock(host: StockHost, count: int) -> list[float]:
    """The same transfer through the stock daemon + session agent (its save dir is a tmp dir)."""
    import struct as st

    from stock_vdagent import STATUS, XFER_DATA, XFER_START

    rates = []
    chunk = os.urandom(64 * 1024)
    for n in range(count):
        size = XFER_MIB << 20
        keyfile = f"[vdagent-file-xfer]\nname=s{n}.bin\nsize={size}\n".encode() + b"\0"
        mark = host.mark()
        t0 = time.perf_counter()
        host.agent.send(XFER_START, st.pack("<I", n + 100) + keyfile)
        host.agent.wait(STATUS, mark)
        for _ in range(size // len(chunk)):
            host.agent.send(XFER_DATA, st.pack("<IQ", n + 100, len(chunk)) + chunk)
        while True:
            _, payload = host.agent.wait(STATUS, mark + 1)
            result = st.unpack_from("<II", payload)
            if result[1] != 0:
                break
            mark += 1
        if result[1] == 3:
            rates.append(size / (time.perf_counter() - t0) / 1e6)
    return rates


def stock_reply_times(host: StockHost, count: int) -> list[float]:
    """MONITORS_CONFIG -> REPLY for the stock daemon (it replies before applying)."""
    from stock_vdagent import MONITORS_CONFIG, REPLY

    times = []
    payload = struct.pack("<IIIIIii", 1, 0, 1080, 1920, 32, 0, 0)
    for _ in range(count):
        mark = host.mark()
        t0 = time.perf_counter()
        host.agent.send(MONITORS_CONFIG, payload)
        t_reply, _ = host.agent.wait(REPLY, mark)
        times.append((t_reply - t0) * 1000)
    return times


REFERENCE = {  # spice.md §3.4 / §2.4, stock agent on this machine class (quiet machine)
    "host→app 1 KiB: REQUEST → app has all data": "0.73 - 0.91 ms",
    "host→app 1 MiB: REQUEST → app has all data": "13.8 - 15.2 ms",
    "host→app 1 KiB: paste end-to-end (xclip spawn → EOF)": "4.0 - 5.0 ms",
    "host→app 1 MiB: paste end-to-end (xclip spawn → EOF)": "16.9 - 19.3 ms",
    "guest→host 1 KiB: REQUEST → CLIPBOARD data at host": "0.37 - 0.44 ms",
    "guest→host 1 MiB: REQUEST → CLIPBOARD data at host": "6.0 - 8.7 ms",
    "guest→host 1 KiB: app owns (stdin closed) → GRAB at host": "3.3 - 4.1 ms",
    "guest→host 1 MiB: app owns (stdin closed) → GRAB at host": "5.6 - 8.1 ms",
    "monitors config → REPLY at host": "0.7 - 1.4 ms (before applying)",
    XFER_ROW: "74 - 97 MB/s",
    "monitors config → layout visible in `xrandr --query` (incl. spawn)": "30 - 35 ms",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps-small", type=int, default=20)
    parser.add_argument("--reps-large", type=int, default=5)
    parser.add_argument("--display-reps", type=int, default=10)
    parser.add_argument("--host", nargs=3, metavar=("DISPLAY", "READY", "WHICH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.host:
        host_main(*args.host)
        return
    reps = {1024: args.reps_small, 1 << 20: args.reps_large}
    xvfb_n, xorg_n = 190, 191
    xvfb = start_x(["Xvfb", f":{xvfb_n}", "-screen", "0", "1920x1080x24", "-nolisten", "tcp"], xvfb_n)
    ours: dict[str, list[float]] = {}
    stock: dict[str, list[float]] = {}
    stock_mem: tuple[tuple[float, float], tuple[float, float]] | None = None
    try:
        hosts: list[Any] = [ConciergeHost(f":{xvfb_n}")]
        if shutil.which("spice-vdagentd") and shutil.which("spice-vdagent"):
            hosts.append(StockHost(f":{xvfb_n}"))
        try:
            fresh = hosts[-1].agent.memory() if len(hosts) > 1 else None
            results = bench_clipboard(hosts, f":{xvfb_n}", reps)
            ours.update(results["concierge"])
            if len(hosts) > 1:
                stock.update(results["stock"])
                stock["monitors config → REPLY at host"] = stock_reply_times(hosts[1], args.display_reps)
                stock_mem = (fresh, hosts[1].agent.memory())
                stock[XFER_ROW] = xfer_stock(hosts[1], 3)
        finally:
            for host in hosts:
                host.close()
        ours[XFER_ROW] = xfer_ours(3)
        with tempfile.TemporaryDirectory(prefix="cc-bench-") as tmp:
            Path(tmp, "xorg.conf").write_text(XORG_DUMMY_CONF)  # the tests' Xorg + dummy config
            argv = [
                "Xorg",
                f":{xorg_n}",
                "-noreset",
                "+extension",
                "RANDR",
                "-nolisten",
                "tcp",
                "-config",
                f"{tmp}/xorg.conf",
                "-logfile",
                f"{tmp}/xorg.log",
            ]
            xorg = start_x(argv, xorg_n)
            try:
                ours.update(bench_display(f":{xorg_n}", args.display_reps))
            finally:
                stop(xorg)
        idle, worked = hosted_memory(f":{xvfb_n}", "all")
        separate = [
            hosted_memory(f":{xvfb_n}", name)[0] for name in ("display", "clipboard", "effects", "filexfer", "audio")
        ]
    finally:
        stop(xvfb)
    print("| measurement | concierge | stock spice-vdagent, same run | ratio (p50) | spice.md |")
    print("|---|---|---|---|---|")
    for name, values in ours.items():
        theirs = stock.get(name)
        unit = "MB/s" if "MB/s" in name else "ms"
        ratio = f"{p50(values) / p50(theirs):.2f}x" if theirs else "-"
        print(
            f"| {name} | {fmt(values, unit)} | {fmt(theirs, unit) if theirs else '-'} | {ratio} | "
            f"{REFERENCE.get(name, '-')} |"
        )
    ref = stock_mem[0] if stock_mem else (72.0, 45.0)
    after = stock_mem[1] if stock_mem else (77.0, 0.0)
    print(
        f"| memory, idle (RSS / PSS): 5 session nodes in one process vs the GTK session agent | "
        f"{idle[0]:.1f} / {idle[1]:.1f} MB | {ref[0]:.1f} / {ref[1]:.1f} MB | "
        f"{idle[0] / ref[0]:.2f}x / {idle[1] / ref[1]:.2f}x | 72 / 45 MB |"
    )
    print(
        f"| memory after 1 MiB clipboards (RSS / PSS) | {worked[0]:.1f} / {worked[1]:.1f} MB | "
        f"{after[0]:.1f} / {after[1]:.1f} MB | {worked[0] / after[0]:.2f}x / "
        f"{worked[1] / max(after[1], 0.1):.2f}x | 77 MB RSS |"
    )
    rss, pss = sum(m[0] for m in separate), sum(m[1] for m in separate)
    print(
        f"| memory, idle: the 5 nodes as 5 processes (sum RSS / sum PSS) | {rss:.1f} / {pss:.1f} MB"
        f" | {ref[0]:.1f} / {ref[1]:.1f} MB | {rss / ref[0]:.2f}x / {pss / ref[1]:.2f}x | - |"
    )


if __name__ == "__main__":
    main()

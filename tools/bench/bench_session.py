"""Session-actor benchmarks: clipboard latency both ways (1 KiB, 1 MiB) against real Xvfb +
xclip, MONITORS_CONFIG -> REPLY and -> layout visible on Xorg + dummy, and the memory of one
process hosting the four session nodes, next to the stock spice-vdagent (measured here when
installed; latency anchors from docs/reference spice.md §3.4, same machine class).

Run: ``PYTHONPATH=src .venv/bin/python tools/bench/bench_session.py`` (markdown on stdout).
Not a test: numbers vary with machine load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from concierge.actors.node import Incoming
from concierge.testing.context import FakeContext

XORG_CONF = Path(__file__).resolve().parents[2] / "tests" / "session" / "conftest.py"


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


def fmt(values: list[float]) -> str:
    ordered = sorted(values)
    return (
        f"p50 {p50(values):.2f} ms (min {ordered[0]:.2f}, max {ordered[-1]:.2f}, n={len(values)})"
    )


def bench_clipboard(display: str, reps: dict[int, int]) -> dict[str, list[float]]:
    from concierge.actors.clipboard.node import ClipboardNode

    ctx = BenchContext("clipboard", {"backend": "x11", "x11_display": display})
    ctx.run_node(ClipboardNode)
    ctx.deliver("spice.announce_capabilities", {"request": 1, "caps": [(1 << 5) | (1 << 6)]})
    out: dict[str, list[float]] = {}
    try:
        for size, count in reps.items():
            data = (os.urandom(size).hex().encode())[:size]
            label = "1 KiB" if size == 1024 else "1 MiB"
            chunks = tuple(data[i : i + 65536] for i in range(0, len(data), 65536))
            # host -> guest app: client GRAB, app pastes; REQUEST -> app has every byte
            ctx.deliver("spice.clipboard_grab", {"selection": 0, "types": [1]})
            time.sleep(0.2)
            ctx.on_cast = lambda kind, inner, chunks=chunks: (
                kind == "clipboard_request"
                and (ctx.deliver("spice.clipboard", {"selection": 0, "type": 1}, chunks))
            )
            agent_ms, e2e_ms = [], []
            for _ in range(count):
                mark = len(ctx.log)
                t0 = time.perf_counter()
                proc = subprocess.Popen(
                    ["xclip", "-d", display, "-o", "-selection", "clipboard", "-t", "UTF8_STRING"],
                    stdout=subprocess.PIPE,
                )
                got = proc.communicate(timeout=30)[0]
                t_end = time.perf_counter()
                t_req, _, _ = ctx.wait_for("clipboard_request", mark)
                assert got == data, "host->guest data mismatch"
                agent_ms.append((t_end - t_req) * 1000)
                e2e_ms.append((t_end - t0) * 1000)
            ctx.on_cast = None
            out[f"host→app {label}: REQUEST → app has all data"] = agent_ms
            out[f"host→app {label}: paste end-to-end (xclip spawn → EOF)"] = e2e_ms
            # guest app -> host: xclip owns; client REQUEST -> CLIPBOARD data at host
            mark = len(ctx.log)
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
            t_grab, _, _ = ctx.wait_for("clipboard_grab", mark)
            grab_ms = (t_grab - t0) * 1000
            req_ms = []
            for _ in range(count):
                mark = len(ctx.log)
                t0 = time.perf_counter()
                ctx.deliver("spice.clipboard_request", {"selection": 0, "type": 1})
                t_data, _, payload = ctx.wait_for("clipboard", mark)
                assert payload == data, "guest->host data mismatch"
                req_ms.append((t_data - t0) * 1000)
            out[f"guest→host {label}: REQUEST → CLIPBOARD data at host"] = req_ms
            out[f"guest→host {label}: app owns (stdin closed) → GRAB at host"] = [grab_ms]
            owner.kill()
            owner.wait()
    finally:
        ctx.close()
    return out


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


def host_main(display: str, ready: str) -> None:
    """Child process: the four session nodes as a session process would host them."""
    import zmq  # noqa: F401  # the real runtime loads pyzmq too: count it

    from concierge.actors.clipboard.node import ClipboardNode
    from concierge.actors.display.node import DisplayNode
    from concierge.actors.effects.node import EffectsNode
    from concierge.actors.filexfer.node import FileXferNode

    tmp = tempfile.mkdtemp(prefix="cc-bench-host-")
    ctxs = [
        BenchContext("display", {"backend": "x11", "x11_display": display}),
        BenchContext("clipboard", {"backend": "x11", "x11_display": display}),
        BenchContext("effects", {"journal": f"{tmp}/j.json"}),
        BenchContext("filexfer", {"directory": tmp}),
    ]
    for ctx, cls in zip(ctxs, (DisplayNode, ClipboardNode, EffectsNode, FileXferNode), strict=True):
        ctx.run_node(cls)
    clip = ctxs[1]
    clip.deliver("spice.announce_capabilities", {"request": 1, "caps": [(1 << 5) | (1 << 6)]})
    Path(ready).write_text("up")
    data = b"y" * (1 << 20)
    clip.deliver("spice.clipboard_grab", {"selection": 0, "types": [1]})
    clip.on_cast = lambda kind, inner: (
        kind == "clipboard_request"
        and clip.deliver("spice.clipboard", {"selection": 0, "type": 1}, (data,))
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


def stock_memory(display: str) -> tuple[float, float] | None:
    """RSS/PSS of the stock GTK session agent (spice-vdagent 0.22) on the same display."""
    if not (shutil.which("spice-vdagent") and shutil.which("spice-vdagentd")):
        return None
    with tempfile.TemporaryDirectory(prefix="cc-stock-") as tmp:
        port = socket.socket(socket.AF_UNIX)
        port.bind(f"{tmp}/port")
        port.listen(1)
        os.mkfifo(f"{tmp}/fifo")
        daemon = subprocess.Popen(
            [
                "spice-vdagentd",
                "-x",
                "-X",
                "-f",
                "-s",
                f"{tmp}/port",
                "-S",
                f"{tmp}/sock",
                "-u",
                f"{tmp}/fifo",
            ],
            stderr=subprocess.DEVNULL,
        )
        while not os.path.exists(f"{tmp}/sock"):
            time.sleep(0.02)
        env = dict(
            os.environ,
            NO_AT_BRIDGE="1",
            GDK_BACKEND="x11",
            DISPLAY=display,
            DBUS_SESSION_BUS_ADDRESS="unix:path=/nonexistent",
        )
        agent = subprocess.Popen(
            ["spice-vdagent", "-x", "-s", f"{tmp}/port", "-S", f"{tmp}/sock", "-f", tmp, "-o", "0"],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(2.5)
        result = memory(agent.pid) if agent.poll() is None else None
        for proc in (agent, daemon):
            proc.kill()
            proc.wait()
        port.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps-small", type=int, default=20)
    parser.add_argument("--reps-large", type=int, default=5)
    parser.add_argument("--display-reps", type=int, default=10)
    parser.add_argument("--host", nargs=2, metavar=("DISPLAY", "READY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.host:
        host_main(*args.host)
        return
    rows: list[tuple[str, str, str]] = []
    anchors = {
        "host→app 1 KiB: REQUEST → app has all data": ("0.73 - 0.91 ms", 0.82),
        "host→app 1 MiB: REQUEST → app has all data": ("13.8 - 15.2 ms", 14.5),
        "host→app 1 KiB: paste end-to-end (xclip spawn → EOF)": ("4.0 - 5.0 ms", 4.5),
        "host→app 1 MiB: paste end-to-end (xclip spawn → EOF)": ("16.9 - 19.3 ms", 18.1),
        "guest→host 1 KiB: REQUEST → CLIPBOARD data at host": ("0.37 - 0.44 ms", 0.40),
        "guest→host 1 MiB: REQUEST → CLIPBOARD data at host": ("6.0 - 8.7 ms", 7.35),
        "guest→host 1 KiB: app owns (stdin closed) → GRAB at host": (
            "3.3 - 4.1 ms (incl. spawn)",
            3.7,
        ),
        "guest→host 1 MiB: app owns (stdin closed) → GRAB at host": (
            "5.6 - 8.1 ms (incl. spawn)",
            6.85,
        ),
        "monitors config → REPLY at host": ("0.7 - 1.4 ms (sent before applying)", 1.05),
        "monitors config → layout visible in `xrandr --query` (incl. spawn)": ("30 - 35 ms", 32.5),
    }
    xvfb_n, xorg_n = 190, 191
    xvfb = start_x(
        ["Xvfb", f":{xvfb_n}", "-screen", "0", "1920x1080x24", "-nolisten", "tcp"], xvfb_n
    )
    results: dict[str, list[float]] = {}
    try:
        results.update(
            bench_clipboard(f":{xvfb_n}", {1024: args.reps_small, 1 << 20: args.reps_large})
        )
        with tempfile.TemporaryDirectory(prefix="cc-bench-") as tmp:
            # same Xorg + dummy config as the tests (the string lives in the tests' conftest)
            text = XORG_CONF.read_text()
            conf = text.split('XORG_DUMMY_CONF = """', 1)[1].split('"""', 1)[0]
            Path(tmp, "xorg.conf").write_text(conf)
            xorg = start_x(
                [
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
                ],
                xorg_n,
            )
            try:
                results.update(bench_display(f":{xorg_n}", args.display_reps))
            finally:
                stop(xorg)
        for name, values in results.items():
            anchor, ref = anchors.get(name, ("-", 0.0))
            ratio = f"{p50(values) / ref:.2f}x" if ref else "-"
            rows.append((name, fmt(values), anchor, ratio))
        with tempfile.TemporaryDirectory(prefix="cc-bench-mem-") as tmp:
            ready = f"{tmp}/ready"
            child = subprocess.Popen(
                [sys.executable, __file__, "--host", f":{xvfb_n}", ready],
                env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src")),
            )
            while not (Path(ready).exists() and Path(ready).read_text() == "up"):
                time.sleep(0.05)
            time.sleep(0.5)
            idle = memory(child.pid)
            while Path(ready).read_text() != "worked":
                time.sleep(0.05)
            worked = memory(child.pid)
            child.kill()
            child.wait()
        stock = stock_memory(f":{xvfb_n}")
        stock_txt = (
            f"stock spice-vdagent measured now: {stock[0]:.1f} MB RSS / {stock[1]:.1f} MB PSS"
            if stock
            else "72 MB RSS / 45 MB PSS (spice.md)"
        )
        ref_rss, ref_pss = stock if stock else (72.0, 45.0)
        rows.append(
            (
                "memory: 4 session nodes in one process, idle (RSS / PSS)",
                f"{idle[0]:.1f} MB / {idle[1]:.1f} MB",
                stock_txt,
                f"{idle[0] / ref_rss:.2f}x / {idle[1] / ref_pss:.2f}x",
            )
        )
        rows.append(
            (
                "memory: same after 3 x 1 MiB host→app pastes",
                f"{worked[0]:.1f} MB / {worked[1]:.1f} MB",
                "77 MB RSS after 1 MiB clipboards (spice.md)",
                f"{worked[0] / 77:.2f}x RSS",
            )
        )
    finally:
        stop(xvfb)
    print("| measurement | concierge | stock anchor | ratio (p50 / anchor midpoint) |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

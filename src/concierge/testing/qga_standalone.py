"""Run the transport actor alone on a unix socket (benchmarks and manual tests, no supervisor).

``python -m concierge.testing.qga_standalone --socket PATH [--fake-capabilities]`` serves QGA
with the real routes (commands whose actors are absent answer UNAVAILABLE) or, with
``--fake-capabilities``, with :mod:`concierge.testing.qgafakes` bench routes (``guest-fstrim``
then takes ``--slow-s`` seconds, everything else answers at once). Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from types import FrameType

from concierge.actors.hostlink.node import HostLinkNode
from concierge.testing.pollctx import PollingContext
from concierge.testing.qgafakes import FakeCapabilities


def main(argv: list[str] | None = None) -> int:
    """Serve until a signal arrives."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--fake-capabilities", action="store_true")
    parser.add_argument("--slow-s", type=float, default=0.2)
    args = parser.parse_args(argv)
    settings: dict[str, object] = {
        "channels": [{"name": "qga", "protocol": "qga", "method": "unix-listen", "path": str(args.socket)}],
    }
    peers = None
    if args.fake_capabilities:
        fake = FakeCapabilities(slow_s=args.slow_s)
        settings["frontends"] = {"qga": "concierge.testing.qgafakes:FakeBenchQgaFrontEnd"}
        peers = fake.peers()
    ctx = PollingContext("transport", settings, runtime_dir=args.socket.parent, peers=peers)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ctx.run_node(HostLinkNode)
    stop.wait()
    ctx.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

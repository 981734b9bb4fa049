"""Entry point of every actor process: ``python -m concierge.runtime.runner --id ID --runtime-dir D``.

Handshake with the supervisor (Hello -> Welcome with the resolved config -> Ready), start the
node named by ``entry``, run the bridge, and turn the outcome into a classified exit code:
78 config error (never restarted), 69 resource absent (retried slowly), 70 crash.
Children die with their supervisor (PR_SET_PDEATHSIG plus a heartbeat timeout).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import pkgutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import zmq

from concierge import __version__
from concierge.errors import ConfigError, ExitCode, ProtocolError, UnavailableError
from concierge.logs import EXIT_REASON_MARK, setup_logging
from concierge.optional import missing_dependency
from concierge.proctitle import set_title
from concierge.runtime import envelope, sockets
from concierge.runtime.bridge import Bridge
from concierge.runtime.endpoints import RuntimeLayout
from concierge.runtime.node import Node

log = logging.getLogger("concierge.runner")

PR_SET_PDEATHSIG = 1


def _name_process(actor_id: str) -> None:
    """Show ``concierge: <actor>`` in ps and ``systemctl status``, ``cc-<actor>`` in top
    (forked actors would otherwise all show the supervisor's command line)."""
    set_title(f"concierge: {actor_id}", comm=f"cc-{actor_id}")


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGTERM us when the supervisor dies; exit if it already has.

    A forked actor is re-parented to the supervisor (a subreaper) when its intermediate
    parent exits; wait for that first, or the death signal would name the wrong parent.
    """
    deadline = time.monotonic() + 2.0
    while parent_pid and os.getppid() != parent_pid and time.monotonic() < deadline:
        time.sleep(0.001)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except OSError:
        pass
    if parent_pid and os.getppid() != parent_pid:
        raise SystemExit(ExitCode.TEMPFAIL)


def _handshake(control: zmq.Socket[bytes], actor_id: str, timeout_s: float) -> dict[str, Any]:
    """Send Hello, wait for Welcome (the resolved actor config)."""
    hello = {"pid": os.getpid(), "version": __version__, "id": actor_id}
    control.send_multipart([b"hello", envelope.encode_value(hello)])
    if not control.poll(int(timeout_s * 1000)):
        raise UnavailableError("supervisor did not answer hello")
    verb, *rest = control.recv_multipart()
    if verb != b"welcome" or not rest:
        raise ProtocolError(f"expected welcome, got {verb!r}")
    welcome = envelope.decode_value(rest[0])
    if not isinstance(welcome, dict):
        raise ProtocolError("welcome is not a map")
    return welcome


def _load_node(entry: str) -> type[Node]:
    try:
        cls = pkgutil.resolve_name(entry)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"cannot import {entry!r}: {err}", key="entry") from None
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise ConfigError(f"{entry!r} is not a Node subclass", key="entry")
    return cls


def _last_words(reason: str) -> None:
    """Tell the supervisor why we exit (one line on the stderr pipe it reads before reaping us:
    the reason ``concierge status`` and ``--wait`` show). Never raises."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(EXIT_REASON_MARK + " ".join(reason.split())[:500] + "\n")
        sys.stderr.flush()


def run(actor_id: str, runtime_dir: Path, parent_pid: int) -> int:
    """Run one actor process to completion; returns its exit code."""
    _die_with_parent(parent_pid)
    _name_process(actor_id)
    handler = setup_logging(actor_id, priority=True)  # stderr is the supervisor's pipe
    layout = RuntimeLayout(runtime_dir)
    zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    control = sockets.dealer(zctx, layout.url(layout.control), actor_id)
    bridge: Bridge | None = None
    try:
        welcome = _handshake(control, actor_id, timeout_s=10.0)
        handler = setup_logging(actor_id, fmt=welcome.get("log_format"), level=welcome.get("log_level"), priority=True)
        node_cls = _load_node(str(welcome["entry"]))
        bridge = Bridge(
            actor_id=actor_id,
            layout=layout,
            welcome=welcome,
            zctx=zctx,
            control=control,
            on_frozen=handler.set_frozen,
        )
        signal.signal(signal.SIGTERM, lambda *_: bridge.stop(0) if bridge else None)
        node = node_cls(bridge)
        bridge.node = node
        node.start()
        bridge.open_lanes()
        control.send_multipart([b"ready", b""])
        log.info("actor ready", extra={"event": "actor.ready"})
        code = bridge.run()
        node.stop()
        return code
    except ConfigError as err:
        log.error("config error: %s", err, extra={"event": "actor.config_error"})
        _last_words(f"config error: {err}")
        return ExitCode.CONFIG
    except UnavailableError as err:
        log.warning("unavailable: %s", err, extra={"event": "actor.unavailable"})
        _last_words(str(err))
        return ExitCode.UNAVAILABLE
    except ImportError as err:
        unavailable = missing_dependency(err)
        if unavailable is None:
            log.exception("actor crashed", extra={"event": "actor.crashed"})
            _last_words(f"crashed: {type(err).__name__}: {err}")
            return ExitCode.SOFTWARE
        log.warning("unavailable: %s", unavailable, extra={"event": "actor.unavailable"})
        _last_words(str(unavailable))
        return ExitCode.UNAVAILABLE
    except Exception as err:  # process boundary: any other failure is a crash the supervisor restarts
        log.exception("actor crashed", extra={"event": "actor.crashed"})
        _last_words(f"crashed: {type(err).__name__}: {err}")
        return ExitCode.SOFTWARE
    finally:
        if bridge is not None:
            bridge.close()
        control.close(0)
        zctx.term()


def run_forked(actor_id: str, runtime_dir: str, parent_pid: int) -> int:
    """Entry of an actor forked by the fork server; returns the exit code."""
    code = run(actor_id, Path(runtime_dir), parent_pid)
    logging.shutdown()
    sys.stderr.flush()
    return code


def main(argv: list[str] | None = None) -> int:
    """Parse the supervisor's arguments and run the actor."""
    parser = argparse.ArgumentParser(prog="concierge-actor")
    parser.add_argument("--id", required=True)
    parser.add_argument("--runtime-dir", required=True, type=Path)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)
    code = run(args.id, args.runtime_dir, args.parent_pid)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)  # pykka/daemon threads must not keep a dead actor process alive


if __name__ == "__main__":
    raise SystemExit(main())

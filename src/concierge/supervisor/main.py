"""``concierge run``: lock the runtime dir, resolve config and channels, supervise.

Exit codes: 0 stopped cleanly, 70 an essential actor gave up, 75 another instance holds the
runtime directory, 78 configuration error.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import IO, Any

from concierge.config.loader import load_config
from concierge.config.schema import AgentConfig
from concierge.errors import ConfigError, ExitCode
from concierge.logs import resolve_format, setup_logging
from concierge.proctitle import set_title
from concierge.runtime.endpoints import RuntimeLayout, default_runtime_dir

log = logging.getLogger("concierge.supervisor")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``concierge run`` (mirrors qemu-ga's -m/-p with ``--channel``)."""
    parser.add_argument("--config", type=Path, help="main TOML file (default /etc/concierge/concierge.toml)")
    parser.add_argument(
        "--channel",
        action="append",
        default=[],
        metavar="NAME=METHOD:PATH",
        help="host channel, e.g. qga=unix-listen:/run/qga.sock (repeatable)",
    )
    parser.add_argument("--input-sink", help="uinput (default) or file:PATH for raw input_event records")
    parser.add_argument("--log-format", choices=("auto", "json", "text"), help="default: text on a terminal, else json")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))


def take_lock(layout: RuntimeLayout) -> IO[str]:
    """Single-instance lock, taken before any bind (a second bind would steal ipc paths)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    handle = open(layout.lock, "a+")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise RuntimeError(f"another concierge (pid {owner}) is running on {layout.root}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def clean_stale(layout: RuntimeLayout) -> None:
    """Remove sockets left by a crashed run (safe: we hold the lock)."""
    if layout.core.exists():
        shutil.rmtree(layout.core)
    layout.ctl.unlink(missing_ok=True)


def resolve_channels(args: argparse.Namespace, config: AgentConfig, layout: RuntimeLayout) -> list[dict[str, str]]:
    """Channels from --channel flags, else the config, else the embedded default."""
    from concierge.transport.host import spec  # noqa: PLC0415 - only the run command needs it

    if args.channel:
        return [spec.parse_channel(text) for text in args.channel]
    if config.channels:
        return [
            {"name": name, "protocol": ch.protocol, "method": ch.method, "path": ch.path}
            for name, ch in config.channels.items()
        ]
    return spec.default_channels(layout.root)


def present_protocols(channels: list[dict[str, str]], defaulted: bool) -> frozenset[str]:
    """Protocols whose host channel really exists here. Channels named on the command line or
    in the config count; of the built-in default layout only the virtio ports found do (its
    fallback unix sockets exist for local tools and tests, not because a host is there)."""
    return frozenset(ch["protocol"] for ch in channels if not defaulted or ch["method"] != "unix-listen")


def run(args: argparse.Namespace) -> int:
    """Start the supervisor in the foreground."""
    from concierge.supervisor.core import Supervisor  # noqa: PLC0415 - keeps `concierge status` lean
    from concierge.supervisor.dormancy import unmet_requirement  # noqa: PLC0415
    from concierge.supervisor.forkserver import ForkServer, preload  # noqa: PLC0415

    def loader() -> AgentConfig:
        """The configuration with command-line overrides applied (also used by reload)."""
        import msgspec  # noqa: PLC0415

        loaded = load_config(args.config, explicit=args.config is not None)[0]
        agent = msgspec.structs.replace(
            loaded.agent,
            log_format=resolve_format(args.log_format or loaded.agent.log_format),
            log_level=args.log_level or loaded.agent.log_level,
        )
        return msgspec.structs.replace(loaded, agent=agent)

    try:
        config = loader()
    except ConfigError as err:
        print(f"concierge: config error: {err}", file=sys.stderr)  # noqa: T201
        return ExitCode.CONFIG
    agent = config.agent
    set_title("concierge: supervisor")
    handler = setup_logging("supervisor", fmt=agent.log_format, level=agent.log_level)
    layout = RuntimeLayout(args.runtime_dir or default_runtime_dir())
    try:
        lock = take_lock(layout)
    except RuntimeError as err:
        print(f"concierge: {err}", file=sys.stderr)  # noqa: T201
        return ExitCode.TEMPFAIL
    clean_stale(layout)
    layout.ensure_dirs()
    settings: dict[str, dict[str, Any]] = {}
    protocols: frozenset[str] = frozenset()
    try:
        if "transport" in config.actors and config.actors["transport"].enabled:
            channels = resolve_channels(args, config, layout)
            settings["transport"] = {"channels": channels}
            protocols = present_protocols(channels, defaulted=not args.channel and not config.channels)
            for channel in channels:
                log.info(
                    "channel %s: %s %s",
                    channel["name"],
                    channel["method"],
                    channel["path"],
                    extra={"event": "agent.channel"},
                )
    except ConfigError as err:
        print(f"concierge: config error: {err}", file=sys.stderr)  # noqa: T201
        return ExitCode.CONFIG
    sink = args.input_sink or agent.input_sink
    if not sink and not os.path.exists("/dev/uinput"):
        sink = f"file:{layout.root / 'input-events'}"
        log.info("no /dev/uinput: input events go to %s", sink[5:], extra={"event": "agent.input_sink"})
    if sink:
        settings.setdefault("input", {})["sink"] = sink
    os.environ["CONCIERGE_LOG_FORMAT"] = agent.log_format
    forkserver = None
    if os.environ.get("CONCIERGE_FORKSERVER", "1") != "0":
        # not the actors this guest cannot use (their channel is absent): an operator's
        # `concierge start` still works, importing after the fork; on-demand ones per config
        needed = [s for s in config.actors.values() if s.enabled and not s.user and not unmet_requirement(s, protocols)]
        if config.supervisor.preload == "started":  # on-demand actors import after their fork
            needed = [s for s in needed if s.activation == "always"]
        preload(tuple(spec.entry for spec in needed))
        forkserver = ForkServer(keep_fds=(2,))
    supervisor = Supervisor(
        config,
        layout,
        settings,
        log_handler=handler,
        config_loader=loader,
        forkserver=forkserver,
        protocols=protocols,
        forkserver_factory=None if forkserver is None else lambda: ForkServer(keep_fds=(2,)),
    )
    log.info("concierge starting on %s", layout.root, extra={"event": "agent.starting"})
    try:
        return supervisor.run()
    finally:
        lock.close()

"""``concierge session``: the per-user session supervisor, run as the user in the graphical session.

It is the same supervisor as the root agent (states, backoff, intensity, pidfds, fork server,
operator socket), over a per-user catalog; its fork server exits once the catalog is started (a
restart execs a fresh interpreter: ~4 MB less for the life of the session). By default the
user's actors (the link to the root gateway, display, clipboard, effects, file transfer, audio)
share one session-group process, restarted as a group (the design's one_for_all; about 20 MB
less per session); with ``--split`` each of ``session`` (link), ``display``, ``clipboard`` and
``desktop`` is its own process and restarts alone. Either way the root agent never notices. The
session supervisor itself is restarted by its systemd user unit (``Restart=on-failure``) or the
XDG autostart entry. Its runtime dir is ``$XDG_RUNTIME_DIR/concierge-session``, so ``concierge
--runtime-dir $XDG_RUNTIME_DIR/concierge-session status`` shows the user's actors.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from concierge.config.schema import ActorSection, AgentConfig, AgentSection
from concierge.errors import ExitCode
from concierge.logs import resolve_format, setup_logging
from concierge.proctitle import set_title
from concierge.runtime.endpoints import RuntimeLayout

#: the compact session group (default): every user actor in one process, restarted together
#: (the design's one_for_all for a user's group)
GROUP_ENTRY = "concierge.actors.desktop:UserSessionNode"
#: ``--split``: one process per user actor, each restarted alone
#: (the link is "session" so the other actors' casts reach it)
SESSION_CATALOG: dict[str, str] = {
    "session": "concierge.actors.session.link:SessionLinkNode",
    "display": "concierge.actors.display.node:DisplayNode",
    "clipboard": "concierge.actors.clipboard.node:ClipboardNode",
    "desktop": "concierge.actors.desktop:DesktopNode",
}


def add_session_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``concierge session``."""
    parser.add_argument(
        "--gateway-dir",
        type=Path,
        default=Path("/run/concierge"),
        help="the root agent's runtime dir (default /run/concierge)",
    )
    parser.add_argument("--display", default="", help="X display (default $DISPLAY)")
    parser.add_argument(
        "--split", action="store_true", help="one process per user actor (default: one session-group process)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="ACTOR",
        help="with --split, run only these user actors besides the link (repeatable)",
    )
    parser.add_argument(
        "--log-format", choices=("auto", "json", "text"), default="auto", help="default: text on a terminal, else json"
    )


def session_runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/concierge-session`` (a private per-user directory)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/concierge-session-{os.getuid()}"  # noqa: S108
    return Path(base) / "concierge-session" if os.environ.get("XDG_RUNTIME_DIR") else Path(base)


def session_config(args: argparse.Namespace) -> AgentConfig:
    """The per-user configuration (built in code: users have no config file to maintain)."""
    link: dict[str, Any] = {"gateway_dir": str(args.gateway_dir), "display": args.display}
    agent = msgspec.structs.replace(AgentSection(), log_format=resolve_format(args.log_format))
    if not args.split:
        parts = {"session": {**link, "grouped": True}, "display": {"geometry_to": "session"}}
        group = ActorSection(entry=GROUP_ENTRY, essential=True, settings=parts)
        return AgentConfig(agent=agent, actors={"session": group})
    actors: dict[str, ActorSection] = {}
    for actor_id, entry in SESSION_CATALOG.items():
        if args.only and actor_id != "session" and actor_id not in args.only:
            continue
        settings = link if actor_id == "session" else {"geometry_to": "session"} if actor_id == "display" else {}
        actors[actor_id] = ActorSection(entry=entry, essential=actor_id == "session", settings=settings)
    return AgentConfig(agent=agent, actors=actors)


def run_session(args: argparse.Namespace, runtime_dir: Path | None) -> int:
    """Run the per-user session supervisor in the foreground."""
    from concierge.supervisor.core import Supervisor  # noqa: PLC0415
    from concierge.supervisor.forkserver import ForkServer, preload  # noqa: PLC0415
    from concierge.supervisor.main import clean_stale, take_lock  # noqa: PLC0415

    if args.display:
        os.environ["DISPLAY"] = args.display
    config = session_config(args)
    set_title("concierge: session supervisor")
    handler = setup_logging("session-supervisor", fmt=config.agent.log_format, level=config.agent.log_level)
    layout = RuntimeLayout(runtime_dir or session_runtime_dir())
    try:
        lock = take_lock(layout)
    except RuntimeError as err:
        print(f"concierge session: {err}", file=sys.stderr)  # noqa: T201
        return ExitCode.TEMPFAIL
    clean_stale(layout)
    layout.ensure_dirs()
    os.environ["CONCIERGE_LOG_FORMAT"] = config.agent.log_format
    forkserver = None
    if os.environ.get("CONCIERGE_FORKSERVER", "1") != "0":
        preload(tuple(spec.entry for spec in config.actors.values()))
        # one spawn per actor, then the fork server exits (restarts exec a fresh interpreter)
        forkserver = ForkServer(keep_fds=(2,), spawns=len(config.actors))
    supervisor = Supervisor(config, layout, {}, log_handler=handler, forkserver=forkserver)
    try:
        return supervisor.run()
    finally:
        lock.close()

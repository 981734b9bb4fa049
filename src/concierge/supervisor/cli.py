"""``concierge``: run the agent, or operate a running one (text for people, --json for scripts).

Global options (``--json``, ``--runtime-dir``, ``--timeout``) are accepted before or after the
subcommand: operators type ``concierge status --json`` as often as ``concierge --json status``.

Exit codes (concierge(1) lists them all): 0 ok, 1 error reply, 2 usage, 3 agent unreachable or
timed out, 4 an actor is not RUNNING or not healthy (status/health) or did not reach what
``--wait`` asked (FATAL), 5 ``--wait``: an actor is WAITING for something absent on this guest,
78 configuration error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from concierge import __version__
from concierge.runtime.endpoints import default_runtime_dir
from concierge.supervisor import cli_render as render

EXIT_ERROR, EXIT_UNREACHABLE, EXIT_UNHEALTHY = 1, 3, 4
#: how long ``--wait`` may take at most (a start is bounded by start_timeout_s, 30 s by default)
WAIT_LIMIT_S = 60.0


def _global_options(parser: argparse.ArgumentParser, *, here: bool) -> None:
    """The options every command takes; below a subcommand they default to "not given" so a
    value typed before the subcommand is not overwritten by the subcommand's default."""
    default: Any = argparse.SUPPRESS
    from_env = os.environ.get("CONCIERGE_RUNTIME_DIR")
    parser.add_argument(
        "--runtime-dir",
        type=Path,
        default=(Path(from_env) if from_env else None) if here else default,
        help="default $CONCIERGE_RUNTIME_DIR, else /run/concierge (root) or $XDG_RUNTIME_DIR/concierge",
    )
    parser.add_argument("--timeout", type=float, default=5.0 if here else default, help="seconds to wait for the agent")
    parser.add_argument(
        "--json", action="store_true", default=False if here else default, help="machine-readable output"
    )


def _parser() -> argparse.ArgumentParser:
    from concierge.supervisor.main import add_run_arguments  # noqa: PLC0415
    from concierge.supervisor.session_main import add_session_arguments  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="concierge", description="One guest agent for QGA, oVirt and SPICE hosts.")
    parser.add_argument("-V", "--version", action="version", version=f"concierge {__version__}")
    _global_options(parser, here=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    def command(name: str, help_text: str, into: Any = sub) -> argparse.ArgumentParser:
        cmd: argparse.ArgumentParser = into.add_parser(name, help=help_text)
        _global_options(cmd, here=False)
        return cmd

    add_run_arguments(command("run", "run the agent in the foreground"))
    add_session_arguments(command("session", "run the per-user session supervisor (as the user)"))
    command("status", "actor states, restarts, health, why an actor waits").add_argument("actors", nargs="*")
    for name in ("start", "stop", "restart"):
        cmd = command(name, f"{name} actors (or all)")
        cmd.add_argument("actors", nargs="+")
        cmd.add_argument(
            "--wait", action="store_true", help="wait until the outcome is known (RUNNING, WAITING, FATAL)"
        )
    logs = command("logs", "recent log lines of an actor, or of the supervisor")
    logs.add_argument("actor", help="an actor id, or 'supervisor'")
    logs.add_argument("-n", type=int, default=200)
    logs.add_argument("-f", "--follow", action="store_true")
    metrics = command("metrics", "memory, CPU and counters per actor")
    metrics.add_argument("actors", nargs="*")
    metrics.add_argument("--format", choices=("table", "json", "prometheus"), default="table")
    metrics.add_argument("--textfile", type=Path, help="also write Prometheus text atomically here (node_exporter)")
    command("health", "exit 0 when every actor is RUNNING and healthy")
    command("reload", "re-read the configuration and apply it")
    command("shutdown", "stop the agent")
    command("version", "versions of the CLI and the running agent")
    command("doctor", "ports, conflicting stock agents, uinput/logind/display, policy").add_argument(
        "--config", type=Path
    )
    from concierge.supervisor.cli_config import add_config_commands  # noqa: PLC0415

    add_config_commands(command("config", "configuration tools"), command)
    return parser


def _unhealthy(result: dict[str, Any]) -> bool:
    """An actor that is not RUNNING and healthy, unless it is waiting for a device or service
    that is absent on this guest (exit 69: retried on parole, not a failure of the agent)."""
    return any(
        (a["state"] != "RUNNING" or a["health"] not in ("ok", "degraded"))
        and not a.get("waiting")
        and a["state"] != "DORMANT"  # not needed now (on demand, or its channel is absent)
        for a in result["actors"]
    )


def _operate(args: argparse.Namespace) -> int:
    from concierge.supervisor.client import ControlClient, UnreachableError  # noqa: PLC0415

    runtime_dir = args.runtime_dir or default_runtime_dir()
    try:
        client = ControlClient(runtime_dir, args.timeout)
    except UnreachableError as err:
        if args.command == "version":
            print(f"concierge {__version__} (agent not reachable: {err})")
            return EXIT_UNREACHABLE
        print(f"concierge: {err}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        return _dispatch(client, args)
    except UnreachableError as err:
        print(f"concierge: {err}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()


def _logs(client: Any, args: argparse.Namespace) -> int:
    for reply in client.stream(
        "logs",
        {"actor": args.actor, "n": args.n, "follow": args.follow},
        timeout_s=None if not args.follow else 3600 * 24,
    ):
        if not reply.get("ok"):
            print(f"concierge: {reply['error']['message']}", file=sys.stderr)
            return EXIT_ERROR
        for line in reply["result"]["lines"]:
            print(line, flush=True)
    return 0


def _wait(client: Any, args: argparse.Namespace) -> int:
    """Send start/stop/restart with ``wait`` and show each state change on a terminal until the
    supervisor answers with every actor's outcome."""
    progress = sys.stderr.isatty() and not args.json
    call_args = {"actors": args.actors, "wait": True}
    for reply in client.stream(args.command, call_args, timeout_s=max(args.timeout, WAIT_LIMIT_S)):
        if not reply.get("ok"):
            print(f"concierge: {reply['error']['message']}", file=sys.stderr)
            return EXIT_ERROR
        result = reply["result"]
        if reply.get("more"):
            if progress:
                step = result.get("progress", {})
                print(f"  {step.get('actor')}: {step.get('state')}...", file=sys.stderr, flush=True)
            continue
        print(json.dumps(result, indent=2, sort_keys=True) if args.json else render.render_action(args.command, result))
        return render.wait_exit(args.command, result)
    return EXIT_UNREACHABLE


def _dispatch(client: Any, args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "logs":
        return _logs(client, args)
    if cmd in ("start", "stop", "restart") and args.wait:
        return _wait(client, args)
    call_args: dict[str, Any] = {}
    if cmd in ("start", "stop", "restart"):
        call_args = {"actors": args.actors, "wait": False}
    elif cmd in ("status", "metrics"):
        call_args = {"actors": args.actors}
    reply = client.call(cmd, call_args)
    if not reply.get("ok"):
        print(f"concierge: {reply['error']['message']}", file=sys.stderr)
        return EXIT_ERROR
    result = reply["result"]
    if cmd == "metrics" and (args.format == "prometheus" or args.textfile):
        from concierge.supervisor.metrics_format import to_prometheus, write_textfile  # noqa: PLC0415

        text = to_prometheus(result)
        if args.textfile:
            write_textfile(args.textfile, text)
        if args.format == "prometheus":
            print(text, end="")
            return 0
    print(_render(cmd, args, result))
    if cmd == "status" and _unhealthy(result):
        return EXIT_UNHEALTHY
    if cmd == "health" and not result["healthy"]:
        return EXIT_UNHEALTHY
    return 0


def _render(cmd: str, args: argparse.Namespace, result: dict[str, Any]) -> str:
    if args.json or (cmd == "metrics" and args.format == "json"):
        return json.dumps(result, indent=2, sort_keys=True)
    if cmd == "status":
        return render.render_status(result, sys.stdout.isatty())
    if cmd == "health":
        if result["healthy"]:
            return "healthy"
        return "unhealthy: " + ", ".join(f"{a['id']} {a['state']} {a['health']}" for a in result["unhealthy"])
    if cmd == "metrics":
        return render.render_metrics(result)
    if cmd == "version":
        return f"concierge {__version__} (agent {result['version']})"
    if cmd in ("start", "stop", "restart"):
        return render.render_action(cmd, result)
    if cmd == "reload":
        return render.render_reload(result)
    if cmd == "shutdown":
        return "agent: stopping"
    return json.dumps(result, sort_keys=True)


def _doctor(args: argparse.Namespace) -> int:
    import msgspec  # noqa: PLC0415

    from concierge.config.loader import load_config  # noqa: PLC0415
    from concierge.errors import ConfigError  # noqa: PLC0415
    from concierge.supervisor.doctor import run_doctor  # noqa: PLC0415

    try:
        config = msgspec.to_builtins(load_config(args.config, explicit=args.config is not None)[0])
    except ConfigError as err:
        print(f"concierge: config error: {err}", file=sys.stderr)
        config = None
    return run_doctor(as_json=args.json, config=config)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``concierge`` command."""
    args = _parser().parse_args(argv)
    if args.command == "run":
        from concierge.supervisor.main import run  # noqa: PLC0415

        return run(args)
    if args.command == "session":
        from concierge.supervisor.session_main import run_session  # noqa: PLC0415

        return run_session(args, args.runtime_dir)
    if args.command == "doctor":
        return _doctor(args)
    if args.command == "config":
        from concierge.supervisor.cli_config import run_config  # noqa: PLC0415

        return run_config(args)
    return _operate(args)

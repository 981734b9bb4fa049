"""``concierge``: run the agent, or operate a running one (tables for people, --json for scripts).

Exit codes: 0 ok, 1 error reply, 2 usage, 3 agent unreachable or timed out, 4 an actor is not
RUNNING or not healthy (status/health), 78 configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from concierge import __version__
from concierge.runtime.endpoints import default_runtime_dir

EXIT_ERROR, EXIT_UNREACHABLE, EXIT_UNHEALTHY = 1, 3, 4


def _parser() -> argparse.ArgumentParser:
    from concierge.supervisor.main import add_run_arguments  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="concierge", description="One guest agent for QGA, oVirt and SPICE hosts.")
    parser.add_argument("--runtime-dir", type=Path, help="default /run/concierge (root) or $XDG_RUNTIME_DIR/concierge")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the agent")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_arguments(sub.add_parser("run", help="run the agent in the foreground"))
    from concierge.supervisor.session_main import add_session_arguments  # noqa: PLC0415

    add_session_arguments(sub.add_parser("session", help="run the per-user session supervisor (as the user)"))
    status = sub.add_parser("status", help="actor states, restarts, health")
    status.add_argument("actors", nargs="*")
    for name in ("start", "stop", "restart"):
        cmd = sub.add_parser(name, help=f"{name} actors (or all)")
        cmd.add_argument("actors", nargs="+")
        cmd.add_argument("--wait", action="store_true", help="wait until RUNNING/STOPPED or FATAL")
    logs = sub.add_parser("logs", help="recent log lines of an actor")
    logs.add_argument("actor")
    logs.add_argument("-n", type=int, default=200)
    logs.add_argument("-f", "--follow", action="store_true")
    metrics = sub.add_parser("metrics", help="memory, CPU and counters per actor")
    metrics.add_argument("actors", nargs="*")
    metrics.add_argument("--format", choices=("table", "json", "prometheus"), default="table")
    metrics.add_argument("--textfile", type=Path, help="also write Prometheus text atomically here (node_exporter)")
    sub.add_parser("health", help="exit 0 when every actor is RUNNING and healthy")
    sub.add_parser("reload", help="re-read the configuration and apply it")
    sub.add_parser("shutdown", help="stop the agent")
    sub.add_parser("version", help="versions of the CLI and the running agent")
    doctor = sub.add_parser("doctor", help="ports, conflicting stock agents, uinput/logind/display, policy")
    doctor.add_argument("--config", type=Path)
    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate the configuration files")
    check.add_argument("--config", type=Path)
    return parser


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _uptime(seconds: float) -> str:
    if not seconds:
        return "-"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s" if minutes else f"{seconds:.1f}s"


def _color(state: str, tty: bool) -> str:
    if not tty:
        return state
    code = {"RUNNING": "32", "FATAL": "31", "BACKOFF": "33", "STARTING": "36", "DORMANT": "2"}.get(state)
    return f"\033[{code}m{state}\033[0m" if code else state


def render_status(result: dict[str, Any], tty: bool) -> str:
    """The status table as people read it."""
    rows = [["ACTOR", "STATE", "PID", "UPTIME", "RESTARTS", "HEALTH", "LAST EXIT"]]
    for actor in result["actors"]:
        rows.append(
            [
                actor["id"],
                "WAITING" if actor.get("waiting") else actor["state"],
                str(actor["pid"] or "-"),
                _uptime(actor["uptime_s"]),
                f"{actor['restarts_recent']}/{actor['restarts']}",
                actor["health"] + (f" ({actor['detail']})" if actor["detail"] else ""),
                actor["last_exit"] or "-",
            ]
        )
    text = _table(rows)
    if tty:
        for state in ("RUNNING", "FATAL", "BACKOFF", "STARTING", "DORMANT"):
            text = text.replace(f"  {state} ", f"  {_color(state, tty)} ")
    head = f"concierge {result['version']} pid {result['pid']} up {_uptime(result['uptime_s'])}"
    head += " FROZEN" if result.get("frozen") else ""
    return head + "\n" + text


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


def _dispatch(client: Any, args: argparse.Namespace) -> int:
    tty = sys.stdout.isatty()
    cmd = args.command
    if cmd == "logs":
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
    call_args: dict[str, Any] = {}
    if cmd in ("start", "stop", "restart"):
        call_args = {"actors": args.actors, "wait": args.wait}
    elif cmd in ("status", "metrics"):
        call_args = {"actors": args.actors}
    reply = client.call(cmd, call_args, timeout_s=max(args.timeout, 60.0) if getattr(args, "wait", False) else None)
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
    if args.json or (cmd == "metrics" and args.format == "json"):
        print(json.dumps(result, indent=2, sort_keys=True))
    elif cmd == "status":
        print(render_status(result, tty))
    elif cmd == "health":
        print(
            "healthy"
            if result["healthy"]
            else "unhealthy: " + ", ".join(f"{a['id']} {a['state']} {a['health']}" for a in result["unhealthy"])
        )
    elif cmd == "metrics":
        rows = [["ACTOR", "PID", "RSS MB", "PSS MB", "CPU s", "THREADS", "MSG IN/OUT"]]
        for actor in result["actors"]:
            c = actor.get("counters", {})
            rows.append(
                [
                    actor["id"],
                    str(actor["pid"] or "-"),
                    f"{actor.get('rss_bytes', 0) / 1e6:.1f}",
                    f"{actor.get('pss_bytes', 0) / 1e6:.1f}",
                    str(actor.get("cpu_s", "-")),
                    str(actor.get("threads", "-")),
                    f"{c.get('msg.in', 0)}/{c.get('msg.out', 0)}",
                ]
            )
        print(_table(rows))
    elif cmd == "version":
        print(f"concierge {__version__} (agent {result['version']})")
    else:
        print(json.dumps(result, sort_keys=True))
    if cmd == "status" and _unhealthy(result):
        return EXIT_UNHEALTHY
    if cmd == "health" and not result["healthy"]:
        return EXIT_UNHEALTHY
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from concierge.config.loader import load_config  # noqa: PLC0415
    from concierge.errors import ConfigError, ExitCode  # noqa: PLC0415

    try:
        config, used = load_config(args.config, explicit=args.config is not None)
    except ConfigError as err:
        print(f"concierge: config error: {err}", file=sys.stderr)
        return ExitCode.CONFIG
    print(f"ok: {len(config.actors)} actors; files: {', '.join(used) or 'built-in defaults only'}")
    return 0


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
        return _config_check(args)
    return _operate(args)

"""``concierge config ...``: validate the configuration (and, below, import qemu-ga's)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def add_config_commands(config: argparse.ArgumentParser, command: Callable[..., argparse.ArgumentParser]) -> None:
    """``config check`` and ``config import-qemu-ga``."""
    sub = config.add_subparsers(dest="config_command", required=True, metavar="config-command")
    check = command("check", "validate the configuration files and every actor's settings", sub)
    check.add_argument("--config", type=Path)


def run_config(args: argparse.Namespace) -> int:
    """Dispatch ``config`` subcommands."""
    return _check(args)


def _check(args: argparse.Namespace) -> int:
    from concierge.config.loader import load_config  # noqa: PLC0415
    from concierge.errors import ConfigError, ExitCode  # noqa: PLC0415

    try:
        config, used = load_config(args.config, explicit=args.config is not None)
    except ConfigError as err:
        print(f"concierge: config error: {err}", file=sys.stderr)
        return ExitCode.CONFIG
    print(f"ok: {len(config.actors)} actors; files: {', '.join(used) or 'built-in defaults only'}")
    return 0

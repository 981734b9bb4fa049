"""``concierge config ...``: validate the configuration (and, below, import qemu-ga's)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path


def add_config_commands(config: argparse.ArgumentParser, command: Callable[..., argparse.ArgumentParser]) -> None:
    """``config check`` and ``config import-qemu-ga``."""
    sub = config.add_subparsers(dest="config_command", required=True, metavar="config-command")
    check = command("check", "validate the configuration files and every actor's settings", sub)
    check.add_argument("--config", type=Path)
    imp = command("import-qemu-ga", "carry qemu-ga's settings over into a concierge.d drop-in", sub)
    imp.add_argument("--root", type=Path, default=Path("/"), help="read and write under this root (an image)")
    imp.add_argument("--dry-run", action="store_true", help="print the drop-in instead of writing it")
    imp.add_argument("--force", action="store_true", help="replace an existing drop-in")


def run_config(args: argparse.Namespace) -> int:
    """Dispatch ``config`` subcommands."""
    if args.config_command == "import-qemu-ga":
        return _import_qemu_ga(args)
    return _check(args)


def _import_qemu_ga(args: argparse.Namespace) -> int:
    """Write ``etc/concierge/concierge.d/50-qemu-ga.toml`` from qemu-ga's configuration; keep an
    existing one (an operator may have edited it) unless ``--force``; roll back a drop-in the
    configuration loader would refuse (exit 78)."""
    from concierge.config import qemu_ga  # noqa: PLC0415
    from concierge.config.loader import load_config  # noqa: PLC0415
    from concierge.errors import ConfigError, ExitCode  # noqa: PLC0415

    settings = qemu_ga.read_qemu_ga(args.root)
    tables, carried, skipped = qemu_ga.plan(settings)
    target = args.root / qemu_ga.DROPIN
    if args.json:
        doc = {"sources": settings.sources, "carried": carried, "not_carried": skipped, "dropin": str(target)}
        print(json.dumps({**doc, "tables": tables}, indent=2, sort_keys=True))
    if not settings.sources:
        if not args.json:
            print("no qemu-ga configuration found: nothing to import")
        return 0
    text = qemu_ga.render_dropin(settings)
    if args.dry_run:
        if not args.json:
            print(text, end="")
        return 0
    if target.exists() and not args.force:
        if not args.json:
            print(f"kept {target} (written before; --force replaces it)")
        return 0
    if not tables:
        if not args.json:
            print(f"nothing to carry over from {', '.join(settings.sources)} (qemu-ga's defaults)")
        return 0
    _write_atomically(target, text)
    try:
        load_config(args.root / "etc/concierge/concierge.toml")
    except ConfigError as err:
        target.unlink(missing_ok=True)
        print(f"concierge: the imported settings do not validate, nothing written: {err}", file=sys.stderr)
        return ExitCode.CONFIG
    if not args.json:
        print(f"wrote {target}")
        for item in carried:
            print(f"  carried over: {item}")
        for item in skipped:
            print(f"  not carried over: {item}")
    return 0


def _write_atomically(target: Path, text: str) -> None:
    """A complete file or none: written beside the target (never through a link), renamed."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    temp = target.with_name(f".{target.name}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, target)


def _check(args: argparse.Namespace) -> int:
    from concierge.config.loader import load_config  # noqa: PLC0415
    from concierge.errors import ConfigError, ExitCode  # noqa: PLC0415
    from concierge.supervisor.settings_check import check_settings  # noqa: PLC0415

    try:
        config, used = load_config(args.config, explicit=args.config is not None)
        checked, unchecked = check_settings(config, used[-1] if used else "<defaults>")
    except ConfigError as err:
        print(f"concierge: config error: {err}", file=sys.stderr)
        return ExitCode.CONFIG
    if args.json:
        doc = {"ok": True, "files": used, "actors": list(config.actors), "checked": checked, "unchecked": unchecked}
        print(json.dumps(doc, indent=2))
        return 0
    print(f"ok: {len(config.actors)} actors; files: {', '.join(used) or 'built-in defaults only'}")
    if unchecked:
        print(f"settings not checked (entry unknown to this check): {', '.join(unchecked)}")
    return 0

"""Carry qemu-ga's settings over to Concierge: ``concierge config import-qemu-ga``.

Images in the field configure qemu-ga in ``/etc/qemu/qemu-ga.conf`` (a GKeyFile ``[general]``
group) and on its command line, often through ``/etc/default/qemu-guest-agent`` (Debian:
``DAEMON_ARGS``, ``TRANSPORT=method:path``) or ``/etc/sysconfig/qemu-ga`` (Red Hat:
``BLACKLIST_RPC``, ``FSFREEZE_HOOK_PATHNAME``, ``FILTER_RPC_ARGS``). As in qemu-ga, the command
line wins over the file. What they configure becomes one drop-in,
``/etc/concierge/concierge.d/50-qemu-ga.toml``, so that an image switched to Concierge keeps its
blocked commands and its freeze hook; what has no equivalent is named in its header.

Standard library only; reads files, never runs anything (the ``/etc/default`` file is a shell
fragment: its assignments are parsed, not executed).
"""

from __future__ import annotations

import configparser
import datetime
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

CONF = Path("etc/qemu/qemu-ga.conf")
DEFAULTS = (Path("etc/default/qemu-guest-agent"), Path("etc/sysconfig/qemu-ga"))
DROPIN = Path("etc/concierge/concierge.d/50-qemu-ga.toml")
HEADER = "# Carried over from qemu-ga by `concierge config import-qemu-ga`"
#: qemu-ga's defaults: settings equal to them need nothing in Concierge
DEFAULT_PATHS = {"virtio-serial": "/dev/virtio-ports/org.qemu.guest_agent.0", "isa-serial": "/dev/ttyS0"}
DEFAULT_HOOK = "/etc/qemu/fsfreeze-hook"
DEFAULT_STATEDIRS = frozenset({"/var/run", "/run", ""})
METHODS = frozenset({"virtio-serial", "isa-serial", "unix-listen", "vsock-listen"})
#: qemu-ga settings with no Concierge equivalent, and why that is fine
NOT_CARRIED = {
    "daemon": "systemd runs the agent",
    "pidfile": "systemd tracks the agent",
    "logfile": "logs go to the journal",
    "retry-path": "Concierge always reopens its ports",
    "dump-conf": "not a setting",
}
_QGA_DEFAULTS = {"daemon": "false", "pidfile": "/var/run/qemu-ga.pid", "logfile": "", "retry-path": "false"}
_QGA_DEFAULTS["dump-conf"] = ""
#: command-line option -> configuration key (long and short forms)
_OPTIONS = {
    "-m": "method", "--method": "method", "-p": "path", "--path": "path",
    "-b": "block-rpcs", "--block-rpcs": "block-rpcs", "--blacklist": "block-rpcs",
    "-a": "allow-rpcs", "--allow-rpcs": "allow-rpcs", "-t": "statedir", "--statedir": "statedir",
    "-l": "logfile", "--logfile": "logfile", "-f": "pidfile", "--pidfile": "pidfile",
}  # fmt: skip
_FLAGS = {"-v": "verbose", "--verbose": "verbose", "-d": "daemon", "--daemonize": "daemon", "-r": "retry-path"}
_FLAGS |= {"--retry-path": "retry-path", "-D": "dump-conf", "--dump-conf": "dump-conf"}


@dataclass
class QemuGaSettings:
    """What qemu-ga was configured to do, and from where."""

    values: dict[str, str] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def set(self, key: str, value: str) -> None:
        """Record a setting; RPC lists add up (qemu-ga concatenates the file's and the command
        line's lists), anything else is replaced (the command line wins)."""
        if key in ("block-rpcs", "allow-rpcs") and self.values.get(key):
            value = f"{self.values[key]},{value}"
        self.values[key] = value

    def rpcs(self, key: str) -> list[str]:
        """A comma- (command line) or semicolon- (GKeyFile list) separated RPC list."""
        raw = self.values.get(key, "").replace(";", ",")
        return sorted({name.strip() for name in raw.split(",") if name.strip() and name.strip() != "help"})


def _read_conf(path: Path, into: QemuGaSettings) -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(path.read_text(errors="replace"), source=str(path))
    except (OSError, configparser.Error) as err:
        into.problems.append(f"{path}: not read: {err}")
        return
    if not parser.has_section("general"):
        into.problems.append(f"{path}: no [general] group")
        return
    into.sources.append(str(path))
    for key, value in parser.items("general"):
        into.set("block-rpcs" if key == "blacklist" else key, value.strip())


def _parse_args(words: list[str], into: QemuGaSettings, origin: str) -> None:
    """qemu-ga's options: ``-b x``, ``-bx``, ``--block-rpcs=x``, ``-F``, ``-F/path`` ..."""
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        name, eq, value = word.partition("=")
        if name == "--fsfreeze-hook" or word.startswith("-F"):
            into.set("fsfreeze-hook", (value if name == "--fsfreeze-hook" else word[2:]) or DEFAULT_HOOK)
        elif word in _FLAGS:
            into.set(_FLAGS[word], "true")
        elif name in _OPTIONS:
            if not eq:
                if i >= len(words):
                    into.problems.append(f"{origin}: {word} without a value")
                    continue
                value = words[i]
                i += 1
            into.set(_OPTIONS[name], value)
        elif word[:2] in _OPTIONS and not word.startswith("--"):
            into.set(_OPTIONS[word[:2]], word[2:])
        else:
            into.problems.append(f"{origin}: option {word!r} not understood")


def _read_defaults(path: Path, into: QemuGaSettings) -> None:
    """Shell assignments (``NAME="value"``), parsed without running the file."""
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        into.problems.append(f"{path}: not read: {err.strerror}")
        return
    found = False
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if words[:1] == ["export"]:
            words = words[1:]
        if len(words) != 1 or "=" not in words[0]:
            continue
        name, value = words[0].split("=", 1)
        if name in ("DAEMON_ARGS", "FILTER_RPC_ARGS", "QEMU_GA_ARGS", "OPTIONS"):
            _parse_args(shlex.split(value), into, f"{path}: {name}")
        elif name == "TRANSPORT" and ":" in value:
            method, port = value.split(":", 1)
            into.set("method", method)
            into.set("path", port)
        elif name in ("BLACKLIST_RPC", "BLOCK_RPCS", "BLOCK_RPC"):
            into.set("block-rpcs", value)
        elif name in ("ALLOW_RPCS", "ALLOW_RPC"):
            into.set("allow-rpcs", value)
        elif name == "FSFREEZE_HOOK_PATHNAME":
            into.set("fsfreeze-hook", value or DEFAULT_HOOK)
        else:
            continue
        found = True
    if found:
        into.sources.append(str(path))


def read_qemu_ga(root: Path = Path("/")) -> QemuGaSettings:
    """qemu-ga's configuration file, then its command line (which wins), under ``root``."""
    settings = QemuGaSettings()
    if (root / CONF).is_file():
        _read_conf(root / CONF, settings)
    for defaults in DEFAULTS:
        if (root / defaults).is_file():
            _read_defaults(root / defaults, settings)
    return settings


def _true(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes", "on")


def _toml(value: object) -> str:
    return json.dumps(value)  # a JSON string or list of strings is a valid TOML value


def plan(settings: QemuGaSettings) -> tuple[dict[str, dict[str, object]], list[str], list[str]]:
    """TOML tables to write, what is carried over (for people), what is not (and why)."""
    tables: dict[str, dict[str, object]] = {}
    carried: list[str] = []
    skipped: list[str] = []
    values = settings.values
    qga: dict[str, object] = {}
    for key, setting in (("block-rpcs", "block_rpcs"), ("allow-rpcs", "allow_rpcs")):
        names = settings.rpcs(key)
        if names:
            qga[setting] = names
            carried.append(f"{key} {','.join(names)}")
    if qga:
        tables["actors.transport.settings.protocol_settings.qga"] = qga
    hook = values.get("fsfreeze-hook")
    if hook:
        tables["actors.lifecycle.settings"] = {"fsfreeze_hook": hook}
        carried.append(f"fsfreeze-hook {hook}")
    agent: dict[str, object] = {}
    if _true(values.get("verbose", "")):
        agent["log_level"] = "debug"
        carried.append("verbose (log_level debug)")
    statedir = values.get("statedir", "").rstrip("/")
    if statedir not in DEFAULT_STATEDIRS:
        agent["state_dir"] = statedir
        carried.append(f"statedir {statedir}")
    if agent:
        tables["agent"] = agent
    method = values.get("method", "virtio-serial") or "virtio-serial"
    path = values.get("path", "") or DEFAULT_PATHS.get(method, "")
    if method not in METHODS:
        skipped.append(f"method {method}: unknown transport, the default ports are served")
    elif path != DEFAULT_PATHS.get(method):
        tables["channels.qga"] = {"protocol": "qga", "method": method, "path": path}
        carried.append(f"channel {method}:{path} (SPICE and oVirt channels then need their own [channels.*])")
    for key, why in NOT_CARRIED.items():
        if (
            key in values
            and values[key] not in ("", "false")
            and not (key == "pidfile" and "qemu-ga.pid" in values[key])
        ):
            skipped.append(f"{key} {values[key]}: {why}")
    return tables, carried, skipped + settings.problems


def render_dropin(settings: QemuGaSettings, now: datetime.datetime | None = None) -> str:
    """The drop-in's text: a header saying what was carried over from where, then the tables."""
    tables, carried, skipped = plan(settings)
    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"{HEADER} on {stamp}", f"# from: {', '.join(settings.sources)}"]
    lines += [f"# carried over: {item}" for item in carried]
    lines += [f"# not carried over: {item}" for item in skipped]
    for table, entries in tables.items():
        lines += ["", f"[{table}]"] + [f"{key} = {_toml(value)}" for key, value in entries.items()]
    return "\n".join(lines) + "\n"


def carried_over(dropin: Path) -> list[str]:
    """The ``carried over`` lines of an existing drop-in (for ``concierge doctor``)."""
    try:
        text = dropin.read_text(errors="replace")
    except OSError:
        return []
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("# carried over:")]

"""A vdsm-faithful oVirt guest agent host reader (guestagent.py restated) for tests and benches.

Reproduces what matters on the wire: 64 KiB receive chunks split on newlines, the 1 MiB guard on
the unterminated tail (rest of the line dropped), ``decode('utf8', 'replace')`` + ``json.loads``
then the XML-illegal filter, ``ValueError`` logged and skipped, any other exception (missing
``__name__``, a heartbeat without ``free-ram`` ...) aborting the rest of the chunk, liveness
stamped after the parse and before the handler, the 120 s responsiveness rule and API version
negotiation. Pure protocol: the caller moves bytes (``chunk``) and takes ``outbox`` lines.
Standard library only.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_MESSAGE_SIZE = 1024 * 1024
RESPONSIVE_S = 120.0
MAX_API_VERSION = 3
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")


def _filter(value: Any) -> Any:
    if isinstance(value, str):
        return _ILLEGAL.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_filter(k): _filter(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_filter(v) for v in value]
    return value


@dataclass
class VdsmGuestState:
    """What vdsm stores per VM from the agent (getVmStats keys)."""

    mem_usage: int = 0
    memory_stats: dict[str, str] = field(default_factory=dict)
    guest_name: str = ""
    guest_os: str = ""
    guest_os_info: dict[str, Any] = field(default_factory=dict)
    guest_timezone: dict[str, Any] = field(default_factory=dict)
    net_ifaces: list[dict[str, Any]] = field(default_factory=list)
    apps: tuple[str, ...] = ()
    username: str = "Unknown"
    session: str = "Unknown"
    disks_usage: list[dict[str, str]] = field(default_factory=list)
    fqdn: str = ""
    cpu_count: int = -1
    containers: list[Any] = field(default_factory=list)
    completions: dict[str, bool] = field(default_factory=dict)


class VdsmHost:
    """vdsm's side of one oVirt channel."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, api_version: int = 0) -> None:
        self.clock = clock
        self.effective_api_version = api_version
        self.state = VdsmGuestState()
        self.outbox: list[bytes] = []
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[str] = []
        self.exceptions: list[str] = []
        self.warnings: list[str] = []
        self._buf = b""
        self._too_big = False
        self._agent_ts: float | None = None

    # --- connection -----------------------------------------------------------------------------
    def on_connect(self) -> None:
        """vdsm connected to the QEMU socket: reset the reader and send ``refresh``."""
        self._buf = b""
        self._too_big = False
        self.send("refresh", apiVersion=MAX_API_VERSION)

    def send(self, name: str, **args: Any) -> bytes:
        """Queue a host->guest line formatted like vdsm (``__name__`` last, ASCII JSON)."""
        payload = dict(args)
        payload["__name__"] = name
        line = (json.dumps(payload) + "\n").encode("utf8")
        self.outbox.append(line)
        return line

    def take_outbox(self) -> bytes:
        """Bytes vdsm wants written to the socket since the last call."""
        data = b"".join(self.outbox)
        self.outbox.clear()
        return data

    def is_responsive(self) -> bool:
        """vdsm's rule: a parseable line within the last 120 s."""
        return self._agent_ts is not None and self.clock() - self._agent_ts < RESPONSIVE_S

    # --- read path ------------------------------------------------------------------------------
    def chunk(self, data: bytes) -> None:
        """One ``recv(65536)`` worth of bytes (call with <= 64 KiB pieces to be exact)."""
        try:
            self._handle_data(data)
        except (
            KeyError,
            TypeError,
            AttributeError,
            IndexError,
        ) as err:  # vdsm: "Exception on read callback."
            self.exceptions.append(f"{type(err).__name__}: {err}")

    def feed(self, data: bytes, chunk_size: int = 65536) -> None:
        """Split ``data`` into recv-sized chunks."""
        for start in range(0, len(data), chunk_size):
            self.chunk(data[start : start + chunk_size])

    def _handle_data(self, data: bytes) -> None:
        self._buf += data
        while True:
            if self._too_big:
                nl = self._buf.find(b"\n")
                if nl < 0:
                    self._buf = b""
                    return
                self.warnings.append("dropped rest of too-big message")
                self._buf = self._buf[nl + 1 :]
                self._too_big = False
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) >= MAX_MESSAGE_SIZE:
                    self.warnings.append("message too big, discarded")
                    self._buf = b""
                    self._too_big = True
                return
            line, self._buf = self._buf[:nl], self._buf[nl + 1 :]
            self._process_line(line)

    def _process_line(self, line: bytes) -> None:
        try:
            args = json.loads(line.decode("utf8", "replace"))
        except ValueError:
            self.errors.append(f"bad line: {line[:80]!r}")
            return
        args = _filter(args)
        name = args.pop("__name__")  # KeyError / TypeError escape, as in vdsm
        self._agent_ts = self.clock()
        self.received.append((name, args))
        try:
            self._handle_message(name, args)
        except ValueError as err:
            self.errors.append(f"{name}: {err}")

    def _handle_message(self, name: str, args: dict[str, Any]) -> None:
        st = self.state
        if name == "heartbeat":
            st.mem_usage = int(args["free-ram"])
            stats = args.get("memory-stat") or {}
            keep = (
                "mem_total",
                "mem_unused",
                "mem_buffers",
                "mem_cached",
                "swap_in",
                "swap_out",
                "pageflt",
                "majflt",
            )
            st.memory_stats = {k: str(stats[k]) for k in keep if k in stats}
            if "mem_unused" in st.memory_stats:
                st.memory_stats["mem_free"] = st.memory_stats["mem_unused"]
            self._negotiate(args)
        elif name == "host-name":
            st.guest_name = args["name"]
        elif name == "os-version":
            st.guest_os = args["version"]
        elif name == "os-info":
            st.guest_os_info = args
        elif name == "timezone":
            st.guest_timezone = args
        elif name == "network-interfaces":
            st.net_ifaces = [
                {
                    "name": i["name"],
                    "hw": i["hw"],
                    "inet": i.get("inet", []),
                    "inet6": i.get("inet6", []),
                }
                for i in args["interfaces"]
            ]
        elif name == "applications":
            st.apps = tuple(args["applications"])
        elif name == "active-user":
            if not (args["name"] == "Unknown" and st.username == "None"):
                st.username = args["name"]
        elif name == "disks-usage":
            st.disks_usage = [
                {"path": d["path"], "fs": d["fs"], "total": str(d["total"]), "used": str(d["used"])}
                for d in args["disks"]
            ]
        elif name == "fqdn":
            st.fqdn = args["fqdn"]
        elif name == "number-of-cpus":
            st.cpu_count = int(args["count"])
        elif name == "containers":
            st.containers = list(args["list"])
        elif name == "completion":
            st.completions[args["reply_id"]] = bool(args.get("done"))
        elif name in _SESSION:
            st.session = _SESSION[name]
        elif name in ("session-startup", "session-shutdown", "uninstalled"):
            if name == "uninstalled":
                st.apps = ()
        else:
            self.errors.append(f"Unknown message type {name}")

    def _negotiate(self, args: dict[str, Any]) -> None:
        if "apiVersion" in args:
            try:
                common = max(0, min(int(args["apiVersion"]), MAX_API_VERSION))
            except (TypeError, ValueError):
                common = 0
        else:
            common = 0
        if common != self.effective_api_version:
            self.effective_api_version = common
            if common != 0:
                self.send("api-version", apiVersion=common)


_SESSION = {
    "session-logon": "UserLoggedOn",
    "session-logoff": "LoggedOff",
    "session-lock": "Locked",
    "session-unlock": "Active",
}

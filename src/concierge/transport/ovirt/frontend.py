"""OvirtFrontEnd: the oVirt guest agent protocol on one host channel (inside the transport actor).

Decodes vdsm's commands and turns them into requests to the sso and lifecycle actors; renders
monitor/sso answers into the guest->host reports on OGA's cadence, with its API version
negotiation (first heartbeat of a connection says 0, later ones 3, so vdsm re-sends
``api-version``). Runs on the transport actor's bridge thread and never blocks: every data
source is an asynchronous ``ctx.request``, and the heartbeat never waits for a slow collector.

Stale-command rule (documented in docs/ovirt.md): QEMU keeps host->guest bytes queued while no
agent has the port open, so the first burst after this front-end's first connection can hold
commands hours old. Commands received within ``stale_window_s`` of that first connection are
"possibly stale": ``login``, ``log-off``, ``shutdown`` and ``hibernate`` are dropped (logged,
counted; vdsm falls back to ACPI / the user logs in again), ``before_*`` lifecycle events are
answered with ``completion`` without running hooks; ``refresh``, ``api-version``, ``echo``,
``lock-screen`` (locking is always safe), ``set-number-of-cpus`` and ``after_*`` are honoured.
Must not import zmq or actor packages (only their message type names).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from concierge.runtime.node import NodeContext, Reply, TimerHandle
from concierge.transport.host.api import HostLink
from concierge.transport.ovirt import render
from concierge.transport.ovirt.codec import Garbage, LineReader, Message, encode
from concierge.transport.ovirt.commands import HostCommands
from concierge.transport.ovirt.settings import OvirtSettings, load_settings

log = logging.getLogger(__name__)

Renderer = Callable[[Mapping[str, Any]], dict[str, Any]]
_UNKNOWN = object()

#: commands the stale rule refuses to act on
_STALE_DROPPED = frozenset({"login", "log-off", "shutdown", "hibernate"})

FULL_REFRESH = (
    "active-user",
    "applications",
    "containers",
    "host-name",
    "os-version",
    "network-interfaces",
    "disks-usage",
    "fqdn",
    "timezone",
    "os-info",
    "number-of-cpus",
)
INVENTORY = ("applications", "containers", "host-name", "os-version", "network-interfaces", "fqdn")


class OvirtFrontEnd(HostCommands):
    """The oVirt protocol bound to one :class:`HostLink` (see ``transport/host/api.py``)."""

    def __init__(
        self,
        ctx: NodeContext,
        link: HostLink,
        settings: Mapping[str, Any] | OvirtSettings | None = None,
    ) -> None:
        self.ctx = ctx
        self.link = link
        self.settings = load_settings(settings)
        self.version = 0
        self.reader = LineReader()
        self._connections = 0
        self._opened_at: float | None = None
        self._online = False
        self._generation = 0
        self._timers: list[TimerHandle] = []
        self._inflight: set[str] = set()
        self._heartbeats = 0
        self._rates = render.MemoryRates()
        self._memory: Mapping[str, Any] | None = None
        self._user: object = _UNKNOWN
        self._locked: bool | None = None
        s = self.settings
        nics = s.ignored_nics
        self._reports: dict[str, tuple[str, str, Renderer]] = {
            "host-name": (s.monitor_actor, "monitor.hostname", render.host_name),
            "fqdn": (s.monitor_actor, "monitor.hostname", render.fqdn),
            "os-version": (s.monitor_actor, "monitor.osinfo", render.os_version),
            "os-info": (s.monitor_actor, "monitor.osinfo", render.os_info),
            "timezone": (s.monitor_actor, "monitor.timezone", render.timezone),
            "network-interfaces": (
                s.monitor_actor,
                "monitor.interfaces",
                lambda a: render.network_interfaces(a, nics),
            ),
            "applications": (s.monitor_actor, "monitor.applications", render.applications),
            "disks-usage": (s.monitor_actor, "monitor.filesystems", render.disks_usage),
            "number-of-cpus": (s.monitor_actor, "monitor.cpus", render.number_of_cpus),
            "containers": (s.monitor_actor, "monitor.containers", render.containers),
        }
        self._commands: dict[str, Callable[[Message, bool], None]] = {
            "refresh": self._on_refresh,
            "api-version": self._on_api_version,
            "lock-screen": self._on_lock_screen,
            "login": self._on_login,
            "log-off": self._on_log_off,
            "shutdown": self._on_shutdown,
            "hibernate": self._on_hibernate,
            "echo": self._on_echo,
            "set-number-of-cpus": self._on_set_cpus,
            "lifecycle-event": self._on_lifecycle_event,
        }

    # --- FrontEnd contract ----------------------------------------------------------------------
    def connected(self) -> None:
        """A host attached: push the whole state (vdsm never re-asks after an agent restart)."""
        self._connections += 1
        if self._opened_at is None:
            self._opened_at = self.ctx.clock.monotonic()
        self._online = True
        self._generation += 1
        self._heartbeats = 0
        self.reader.reset()
        log.info("ovirt host attached", extra={"event": "ovirt.connected", "channel": self.link.name})
        self._full_refresh()
        self._heartbeat()
        s = self.settings
        self._every(s.heartbeat_s, self._heartbeat)
        self._every(s.active_user_s, lambda: self._poll_user(force=False))
        self._every(s.number_of_cpus_s, lambda: self._collect("number-of-cpus"))
        self._every(s.inventory_s, self._inventory)
        self._every(s.disks_usage_s, lambda: self._collect("disks-usage"))

    def received(self, data: bytes) -> None:
        """Decode whatever arrived; garbage is logged and skipped up to the next newline."""
        for item in self.reader.feed(data):
            if isinstance(item, Garbage):
                self.ctx.count("ovirt.garbage")
                log.warning(
                    "dropped undecodable host line: %s (%d bytes)",
                    item.reason,
                    item.size,
                    extra={"event": "ovirt.garbage", "channel": self.link.name},
                )
                continue
            try:
                self._dispatch(item)
            except Exception:  # loop boundary: one bad message costs itself, not the channel
                self.ctx.count("ovirt.handler_errors")
                log.exception("host message %r failed", item.name[:64], extra={"event": "ovirt.handler_error"})

    def disconnected(self) -> None:
        """The host went away: stop reporting, forget partial input and the negotiated version."""
        self._online = False
        self._generation += 1
        self._cancel_timers()
        self.reader.reset()
        self._inflight.clear()
        self.version = 0
        self._user = _UNKNOWN
        self._locked = None
        log.info("ovirt host detached", extra={"event": "ovirt.disconnected", "channel": self.link.name})

    def close(self) -> None:
        """The agent stops: say so (``session-shutdown``, as OGA did) and stop every timer."""
        if self._online:
            self._send("session-shutdown", {})
        self._online = False
        self._generation += 1
        self._cancel_timers()

    def event(self, topic: str, body: Any) -> None:
        """A ``session.*`` event from the sso actor (the transport node forwards them)."""
        info = body if isinstance(body, Mapping) else {}
        if not self._online or info.get("active") is False:
            return
        if topic == "session.lock":
            self._report_lock(True)
        elif topic == "session.unlock":
            self._report_lock(False)
        elif topic in ("session.logon", "session.logoff"):
            self._poll_user(force=False)

    # --- sending ----------------------------------------------------------------------------------
    def _send(self, name: str, args: dict[str, Any]) -> None:
        """Write one line if a host is attached and the negotiated version allows it."""
        if not self._online:
            return
        if render.MIN_VERSION.get(name, 0) > self.version:
            self.ctx.count("ovirt.gated")
            return
        line: bytes | None
        try:
            line = encode(name, args)
        except ValueError:
            line = self._trimmed(name, args)
        if line is None:
            return
        self.ctx.count("ovirt.sent")
        self.link.write(line)

    def _trimmed(self, name: str, args: dict[str, Any]) -> bytes | None:
        """Halve the list members of an oversized report until it fits under 1 MiB."""
        trimmed = dict(args)
        for _ in range(32):
            lists = [k for k, v in trimmed.items() if isinstance(v, list) and v]
            if not lists:
                break
            for key in lists:
                trimmed[key] = trimmed[key][: len(trimmed[key]) // 2]
            try:
                line = encode(name, trimmed)
            except ValueError:
                continue
            log.warning("%s trimmed to fit 1 MiB", name, extra={"event": "ovirt.trimmed"})
            return line
        log.error("%s cannot be sent under 1 MiB", name, extra={"event": "ovirt.oversize"})
        return None

    # --- reports ----------------------------------------------------------------------------------
    def _full_refresh(self) -> None:
        self._send("session-startup", {})
        for name in FULL_REFRESH:
            if name == "active-user":
                self._poll_user(force=True)
            else:
                self._collect(name)

    def _inventory(self) -> None:
        for name in INVENTORY:
            self._collect(name)

    def _collect(self, name: str) -> None:
        """Ask the owning actor for one report unless the same report is already in flight."""
        if not self._online or name in self._inflight:
            return
        if render.MIN_VERSION.get(name, 0) > self.version:
            return
        dst, type_, renderer = self._reports[name]
        self._inflight.add(name)
        generation = self._generation

        def done(reply: Reply) -> None:
            if generation != self._generation:
                return
            self._inflight.discard(name)
            if not reply.ok or not isinstance(reply.body, Mapping):
                self.ctx.count(f"ovirt.source_failed.{name}")
                log.debug(
                    "%s unavailable: %s",
                    name,
                    reply.message,
                    extra={"event": "ovirt.source_failed"},
                )
                return
            self._send(name, renderer(reply.body))

        self.ctx.request(dst, type_, {}, timeout_s=self.settings.request_timeout_s, on_reply=done)

    def _heartbeat(self) -> None:
        """Heartbeat with the freshest memory sample; a slow monitor only makes it older."""
        if "heartbeat" in self._inflight:
            self._send_heartbeat()
            return
        self._inflight.add("heartbeat")
        generation = self._generation

        def done(reply: Reply) -> None:
            if generation != self._generation:
                return
            self._inflight.discard("heartbeat")
            if reply.ok and isinstance(reply.body, Mapping):
                self._memory = reply.body
            self._send_heartbeat()

        timeout = max(0.1, min(self.settings.request_timeout_s, self.settings.heartbeat_s * 0.5))
        self.ctx.request(self.settings.monitor_actor, "monitor.memory", {}, timeout_s=timeout, on_reply=done)

    def _send_heartbeat(self) -> None:
        version = 0 if self._heartbeats == 0 else render.MAX_VERSION
        self._heartbeats += 1
        memory = self._memory
        rates = self._rates.rates(self.ctx.clock.monotonic(), memory) if memory else {}
        self._send("heartbeat", render.heartbeat(memory, rates, version))

    def _poll_user(self, *, force: bool) -> None:
        """Ask sso for the console user and lock state; report changes (all of them if forced)."""
        if not self._online or "active-user" in self._inflight:
            return
        self._inflight.add("active-user")
        generation = self._generation

        def done(reply: Reply) -> None:
            if generation != self._generation:
                return
            self._inflight.discard("active-user")
            if not reply.ok or not isinstance(reply.body, Mapping):
                self.ctx.count("ovirt.source_failed.active-user")
                return
            name = reply.body.get("name") or None
            previous = self._user
            if force or name != previous:
                self._user = name
                if previous is not _UNKNOWN and name != previous:
                    self._send("session-logoff" if name is None else "session-logon", {})
                    self._locked = None if name is None else False  # a new session starts unlocked
                self._send("active-user", render.active_user(reply.body))
            locked = reply.body.get("locked")
            if isinstance(locked, bool) and name is not None:
                self._report_lock(locked)

        self.ctx.request(
            self.settings.sso_actor,
            "sso.active_user",
            {},
            timeout_s=self.settings.request_timeout_s,
            on_reply=done,
        )

    def _report_lock(self, locked: bool) -> None:
        if self._locked is locked:
            return
        self._locked = locked
        self._send("session-lock" if locked else "session-unlock", {})

    # --- timers -----------------------------------------------------------------------------------
    def _every(self, interval: float, action: Callable[[], Any]) -> None:
        generation = self._generation

        def tick() -> None:
            if generation != self._generation or not self._online:
                return
            action()
            self._timers.append(self.ctx.call_later(interval, tick))

        self._timers.append(self.ctx.call_later(interval, tick))

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    # --- host commands ----------------------------------------------------------------------------
    def _dispatch(self, msg: Message) -> None:
        self.ctx.count("ovirt.received")
        stale = (
            self._connections == 1
            and self._opened_at is not None
            and self.ctx.clock.monotonic() - self._opened_at < self.settings.stale_window_s
        )
        command = self._commands.get(msg.name)
        if command is None:
            self.ctx.count("ovirt.unknown")
            log.info("unknown host message %r ignored", msg.name[:64], extra={"event": "ovirt.unknown"})
            return
        if stale and msg.name in _STALE_DROPPED:
            self.ctx.count("ovirt.stale_dropped")
            log.warning(
                "%s arrived right after the port opened, maybe queued for hours: ignored",
                msg.name,
                extra={"event": "ovirt.stale_dropped"},
            )
            return
        command(msg, stale)

"""MonitorNode: the monitor actor process (config id ``monitor``).

Cheap probes (procfs and sysfs reads, the cached interface layout; each a few dozen µs, none
can hang) are answered inline on the bridge thread: a hand-off to the actor thread would cost
more than the probe. Hang-prone ones (statvfs, NVMe ioctl, package databases, logind, DNS) are
``blocking=True`` handlers on the worker pool and, inside, go through a
:class:`DeadlineRunner`, so a dead mount costs one timeout and never delays other requests.
Request/reply shapes: messages.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from concierge.actors.monitor import containers, osinfo, routes, stats, users
from concierge.actors.monitor import messages as m
from concierge.actors.monitor.applications import ApplicationsProbe
from concierge.actors.monitor.deadline import DeadlineRunner, ProbeTimeout
from concierge.actors.monitor.disks import DiskProbe
from concierge.actors.monitor.filesystems import FilesystemProbe, agent_mount_roots
from concierge.actors.monitor.fswatch import DirWatch, open_watch
from concierge.actors.monitor.network import InterfaceProbe
from concierge.actors.monitor.settings import MonitorSettings
from concierge.errors import ActorError, ConfigError, ErrorCode
from concierge.runtime.node import Incoming
from concierge.runtime.pushed import WATCH, AnswerOwner
from concierge.runtime.service import ServiceNode, handler

log = logging.getLogger(__name__)


def _body(msg: Incoming) -> dict[str, Any]:
    if msg.body is None:
        return {}
    if not isinstance(msg.body, dict):
        raise ActorError(ErrorCode.BAD_REQUEST, f"{msg.type}: body must be a map or nil")
    return msg.body


class MonitorNode(ServiceNode):
    """Inventory and statistics on request; see :mod:`concierge.actors.monitor.messages`."""

    worker_threads = 4

    def on_start(self) -> None:
        """Validate settings and open the long-lived watchers (netlink, mountinfo)."""
        try:
            self.settings = msgspec.convert(dict(self.ctx.settings), MonitorSettings)
        except msgspec.ValidationError as err:
            raise ConfigError(str(err), key=f"actors.{self.ctx.actor_id}.settings") from err
        cfg = self.settings
        self.runner = DeadlineRunner(max_stuck=cfg.max_stuck_probes)
        self.interfaces = InterfaceProbe(f"{cfg.proc_root}/net/dev")
        self.filesystems = FilesystemProbe(
            self.runner,
            timeout_s=cfg.probe_timeout_s,
            mountinfo=f"{cfg.proc_root}/self/mountinfo",
            sys_root=cfg.sys_root,
            hidden=agent_mount_roots(cfg.hidden_mounts, str(self.ctx.agent.get("state_dir") or "")),
        )
        self.disks = DiskProbe(self.runner, timeout_s=cfg.probe_timeout_s, sys_root=cfg.sys_root)
        self.applications = ApplicationsProbe(cfg.dpkg_status_path, cfg.rpmdb_dir)
        self._fqdn_lock = threading.Lock()
        self._fqdn: tuple[float, str] | None = None
        self._push_on_change()

    def _push_on_change(self) -> None:
        """Offer the answers that change only on events to front-ends that keep them and
        answer inline (see :mod:`concierge.runtime.pushed`): osinfo where inotify tells us of
        a change to os-release, the QGA interface layout where rtnetlink tells us of a link or
        address change. Without the notification, they keep routing."""
        cfg = self.settings
        pushed: dict[str, Callable[[], Any]] = {}
        self.answers = AnswerOwner(pushed)
        self._fswatch: DirWatch | None = open_watch(cfg.os_release_paths, lambda: self.answers.refresh(m.OSINFO))
        if self._fswatch is not None:
            pushed[m.OSINFO] = lambda: osinfo.osinfo(cfg.os_release_paths)
            self.ctx.watch_fd(self._fswatch.fd, self._fswatch.readable)
        self._netlink_fd = self.interfaces.watch_fileno()
        if self._netlink_fd is not None:
            # the layout only: the front-end reads the counters itself (concierge.netdev)
            pushed[m.INTERFACES_QGA_LAYOUT] = lambda: self.interfaces.layout_body(
                cfg.qga_interface_excludes, cfg.qga_interface_cap
            )
            self.interfaces.on_rebuild = lambda: self.ctx.call_soon(
                lambda: self.answers.refresh(m.INTERFACES_QGA_LAYOUT)
            )
            self.ctx.watch_fd(self._netlink_fd, self.interfaces.check)
        if pushed:
            self.accepts = frozenset({*(self.accepts or ()), WATCH})

    def handle(self, msg: Incoming) -> None:
        """Watches of pushed answers are held on the bridge thread; filesystems are answered
        from the probe threads; the rest as handlers."""
        if msg.type == WATCH:
            self.answers.handle(msg)
            return
        if msg.type == m.FILESYSTEMS and msg.reply is not None:
            self._filesystems_from_probes(msg)
            return
        super().handle(msg)

    def _filesystems_from_probes(self, msg: Incoming) -> None:
        """``monitor.filesystems`` without the worker-pool hop: the statvfs calls start from
        here and the probe thread that finishes them answers (the deadline is a bridge timer),
        so no thread sits waiting and a hung mount still costs one timeout, never a blocked
        answer (routed fsinfo was 1.20x qemu-ga through the pool)."""
        reply = msg.reply
        assert reply is not None
        self.ctx.count(f"handled.{msg.type}")
        try:
            scope = _body(msg).get("scope", "block")
            if scope not in ("block", "all"):
                raise ActorError(ErrorCode.BAD_REQUEST, f"unknown filesystems scope {scope!r}")
        except ActorError as err:
            reply.error(err.code, err.message)
            return

        def answer(body: dict[str, Any]) -> None:  # a probe thread, or the bridge at the deadline
            reply.ok(body)
            self._report_stuck()  # set_health is thread-safe

        def answer_safely(body: dict[str, Any]) -> None:
            try:
                answer(body)
            except Exception:  # a callback boundary: never lose the reply to a bug
                log.exception("filesystems answer failed", extra={"event": "handler.crash"})
                reply.error(ErrorCode.INTERNAL, "internal error in monitor.filesystems")

        try:
            self.filesystems.probe_then(scope, answer_safely, self.ctx.call_later)
        except Exception as err:  # loop boundary: a probe bug answers INTERNAL
            log.exception("filesystems probe failed", extra={"event": "handler.crash"})
            reply.error(ErrorCode.INTERNAL, f"internal error in monitor.filesystems: {type(err).__name__}")

    def on_stop(self) -> None:
        """Close fds and let idle probe threads go (stuck ones are daemon threads)."""
        if self._fswatch is not None:
            self.ctx.unwatch_fd(self._fswatch.fd)
            self._fswatch.close()
        if self._netlink_fd is not None:
            self.ctx.unwatch_fd(self._netlink_fd)
        self.interfaces.close()
        self.filesystems.close()
        self.disks.close()
        self.runner.close()

    # --- identity -----------------------------------------------------------------------------
    @handler(m.OSINFO, inline=True)
    def osinfo(self, msg: Incoming) -> dict[str, Any]:
        """uname + os-release."""
        return osinfo.osinfo(self.settings.os_release_paths)

    @handler(m.HOSTNAME, blocking=True)
    def hostname(self, msg: Incoming) -> dict[str, Any]:
        """Host name, and the FQDN unless the body says ``{"fqdn": false}``."""
        name = osinfo.hostname()
        if _body(msg).get("fqdn", True) is False:
            return {"hostname": name}
        return {"hostname": name, "fqdn": self._cached_fqdn(name)}

    def _cached_fqdn(self, name: str) -> str:
        now = self.ctx.clock.monotonic()
        with self._fqdn_lock:
            cached = self._fqdn
        if cached is not None and now - cached[0] < self.settings.fqdn_cache_s:
            return cached[1]
        try:
            value = self.runner.run("fqdn", osinfo.fqdn, self.settings.fqdn_timeout_s)
        except ProbeTimeout:
            return cached[1] if cached is not None else name
        with self._fqdn_lock:
            self._fqdn = (now, value)
        return value

    @handler(m.TIMEZONE, inline=True)
    def timezone(self, msg: Incoming) -> dict[str, Any]:
        """Zone abbreviation/offset (qemu-ga) plus IANA name/standard offset (oVirt)."""
        return osinfo.timezone()

    @handler(m.USERS, blocking=True)
    def users(self, msg: Incoming) -> list[dict[str, Any]]:
        """utmp users, or logind sessions when utmp is missing or empty."""
        found = users.read_utmp(self.settings.utmp_path)
        if found:
            return found
        bus = self.settings.logind_bus
        if bus.lower() == "none":
            return found or []
        timeout = self.settings.logind_timeout_s
        try:
            return self.runner.run("logind", lambda: users.read_logind(bus, timeout), timeout + 0.5)
        except (ProbeTimeout, OSError, TimeoutError, ValueError, KeyError) as err:
            log.info("logind not available: %s", err, extra={"event": "monitor.no_logind"})
        return found or []

    # --- network ------------------------------------------------------------------------------
    @handler(m.INTERFACES, inline=True)
    def network_interfaces(self, msg: Incoming) -> dict[str, Any]:
        """Interfaces filtered by the profile's excludes and cap."""
        profile = _body(msg).get("profile", "default")
        cfg = self.settings
        if profile == "qga":
            return self.interfaces.probe(cfg.qga_interface_excludes, cfg.qga_interface_cap)
        if profile == "default":
            return self.interfaces.probe(cfg.interface_excludes, cfg.interface_cap)
        raise ActorError(ErrorCode.BAD_REQUEST, f"unknown interfaces profile {profile!r}")

    @handler(m.ROUTES, inline=True)
    def network_routes(self, msg: Incoming) -> list[dict[str, Any]]:
        """IPv4 and IPv6 routes."""
        return routes.routes(f"{self.settings.proc_root}/net")

    # --- storage ------------------------------------------------------------------------------
    @handler(m.FILESYSTEMS, blocking=True)
    def filesystem_list(self, msg: Incoming) -> dict[str, Any]:
        """Mounted filesystems; ``{"scope": "all"}`` adds network/FUSE mounts (oVirt)."""
        scope = _body(msg).get("scope", "block")
        if scope not in ("block", "all"):
            raise ActorError(ErrorCode.BAD_REQUEST, f"unknown filesystems scope {scope!r}")
        reply = self.filesystems.probe(scope)
        self._report_stuck()
        return reply

    @handler(m.CONTAINERS, blocking=True)
    def container_list(self, msg: Incoming) -> dict[str, Any]:
        """Docker/Podman containers for oVirt's ``containers`` report ([] without a daemon)."""
        return {"containers": containers.list_containers()}

    @handler(m.DISKS, blocking=True)
    def disk_list(self, msg: Incoming) -> list[dict[str, Any]]:
        """Block devices as guest-get-disks lists them."""
        return self.disks.probe()

    @handler(m.DISKSTATS, inline=True)
    def disk_stats(self, msg: Incoming) -> list[dict[str, Any]]:
        """/proc/diskstats."""
        return stats.diskstats(f"{self.settings.proc_root}/diskstats")

    # --- cpu and memory -----------------------------------------------------------------------
    @handler(m.CPUSTATS, inline=True)
    def cpu_stats(self, msg: Incoming) -> list[dict[str, Any]]:
        """Per-CPU times (ms)."""
        return stats.cpustats(f"{self.settings.proc_root}/stat")

    @handler(m.LOAD, inline=True)
    def load_average(self, msg: Incoming) -> dict[str, float]:
        """Load average."""
        return osinfo.load()

    @handler(m.CPUS, inline=True)
    def cpus(self, msg: Incoming) -> dict[str, int]:
        """Online CPU count."""
        return {"count": osinfo.cpu_count()}

    @handler(m.MEMORY, inline=True)
    def memory_stats(self, msg: Incoming) -> dict[str, int]:
        """Memory sizes and swap/page-fault counters."""
        root = self.settings.proc_root
        return stats.memory(f"{root}/meminfo", f"{root}/vmstat")

    # --- software -----------------------------------------------------------------------------
    @handler(m.APPLICATIONS, blocking=True)
    def installed_applications(self, msg: Incoming) -> dict[str, Any]:
        """Installed packages matching the configured (or requested) name patterns."""
        names = _body(msg).get("names", self.settings.application_names)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ActorError(ErrorCode.BAD_REQUEST, "names must be a list of strings")
        try:
            found = self.runner.run(
                "applications",
                lambda: self.applications.probe(names),
                max(self.settings.probe_timeout_s, 10.0),
            )
        except ProbeTimeout as err:
            raise ActorError(ErrorCode.TIMEOUT, str(err), retryable=True) from err
        return {"applications": found}

    def _report_stuck(self) -> None:
        stuck = self.runner.stuck_keys()
        if stuck:
            self.ctx.set_health("degraded", "blocked probes: " + ", ".join(sorted(stuck)[:5]))
        else:
            self.ctx.set_health("ok")

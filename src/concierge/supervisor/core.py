"""The root supervisor loop: spawn, watch, restart, stop; one poller over everything.

One thread polls the control ROUTER (actor handshakes and heartbeats), the operator socket,
pidfds (immediate exit detection), child stderr pipes and a signal wake-up fd. Operator
commands answer from cached state, so a stuck actor can never hang ``concierge status``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.devices

from concierge.clock import Clock, MonotonicClock
from concierge.config.schema import AgentConfig
from concierge.errors import ExitCode
from concierge.logs import FreezableHandler, RingHandler, TextFormatter, journal_stream, split_priority
from concierge.runtime.endpoints import RuntimeLayout
from concierge.supervisor import dormancy, reloading, report
from concierge.supervisor.actor_plane import ActorPlane
from concierge.supervisor.children import Child, make_rng
from concierge.supervisor.control import ControlServer
from concierge.supervisor.forkkeeper import ForkServerKeeper
from concierge.supervisor.forkserver import ForkServer
from concierge.supervisor.notify import SystemdNotifier
from concierge.supervisor.policy import ExitClass, RestartWindow, backoff_delay, classify_exit, describe_exit
from concierge.supervisor.state import State

log = logging.getLogger(__name__)
#: a supervisor tick this much later than due means the supervisor stood still (see _tick)
_STALL_S = 1.0
#: the actor that freezes filesystems: the only one restarted (at once) while they are frozen
FREEZE_OWNER = "lifecycle"


class Supervisor:
    """Root one_for_one supervisor of the actor processes."""

    def __init__(
        self,
        config: AgentConfig,
        layout: RuntimeLayout,
        settings: dict[str, dict[str, Any]],
        *,
        log_handler: FreezableHandler | None = None,
        forkserver: ForkServer | None = None,
        clock: Clock | None = None,
        config_loader: Any = None,
        protocols: frozenset[str] | None = None,
        forkserver_factory: Callable[[], ForkServer] | None = None,
    ) -> None:
        self.config = config
        self.layout = layout
        self.clock = clock or MonotonicClock()
        self.rng = make_rng()
        self.log_handler = log_handler
        self.forks = ForkServerKeeper(forkserver, forkserver_factory, self.clock.monotonic())
        self.config_loader = config_loader
        self.started_at = self.clock.monotonic()
        self.children: dict[str, Child] = {}
        self.extra_settings = settings
        #: protocols of the host channels that exist on this guest (requirements "channel:X")
        self.protocols = (
            protocols
            if protocols is not None
            else frozenset(str(ch.get("protocol")) for ch in settings.get("transport", {}).get("channels", []))
        )
        self.removed_ids: set[str] = set()
        self.apply_catalog(config, settings)
        self.frozen_until = 0.0
        self.exit_code = 0
        self.running = True
        self.notifier = SystemdNotifier()
        self.readiness = report.Readiness(self.notifier)
        #: our stderr is the journal: children's ``<N>`` priorities are passed on, else stripped
        self.journal = journal_stream()
        # the event proxy thread uses Context.instance(): one context (one I/O thread) for both
        self.zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.plane = ActorPlane(self, self.zctx)
        self.ctl = ControlServer(self, self.zctx)
        self.proxy = zmq.devices.ThreadProxy(zmq.XSUB, zmq.XPUB)  # type: ignore[no-untyped-call]
        self.proxy.bind_in(layout.url(layout.events_in))
        self.proxy.bind_out(layout.url(layout.events_out))
        self.proxy.start()
        self.poller = zmq.Poller()
        self.poller.register(self.plane.sock, zmq.POLLIN)
        self.poller.register(self.ctl.sock, zmq.POLLIN)
        self._sig_r, self._sig_w = socket.socketpair()
        self._sig_r.setblocking(False)
        self._sig_w.setblocking(False)
        self.poller.register(self._sig_r.fileno(), zmq.POLLIN)
        self._fd_owner: dict[int, tuple[str, Child]] = {}
        self.own_log = self._keep_own_log(log_handler)

    def _keep_own_log(self, handler: FreezableHandler | None) -> RingHandler:
        """Keep our own lines for ``concierge logs supervisor`` (formatted as on stderr,
        without the journal priority) and forward them to ``logs supervisor -f`` clients."""
        formatter = handler.formatter if handler is not None else None
        inner = getattr(formatter, "inner", formatter) or TextFormatter("supervisor")
        ring = RingHandler(inner)
        ring.listeners.append(lambda line: self.ctl.follow("supervisor", line))
        logging.getLogger().addHandler(ring)
        return ring

    def apply_catalog(self, config: AgentConfig, settings: dict[str, dict[str, Any]]) -> None:
        sup = config.supervisor
        for actor_id, spec in config.actors.items():
            if not spec.enabled:
                continue
            window = RestartWindow(spec.intensity or sup.intensity, spec.period_s or sup.period_s)
            merged = {**spec.settings, **settings.get(actor_id, {})}
            self.children[actor_id] = Child(actor_id, spec, window, merged)

    # --- process control ----------------------------------------------------------------------
    def start_child(self, child: Child) -> None:
        """Spawn ``child`` (state STARTING) and watch its pidfd and stderr."""
        if self.frozen() and child.id != FREEZE_OWNER:
            child.set_state(State.BACKOFF)
            child.next_start = self.frozen_until
            return
        child.set_state(State.STARTING)
        child.wanted = True
        child.idle_stopping = False
        child.dormant_reason = ""
        child.kill_at = 0.0
        child.term_sent = False
        child.detail = ""
        try:
            child.spawn(self.layout.root, self.forks.get())
        except OSError as err:
            log.error("cannot spawn %s: %s", child.id, err, extra={"event": "supervisor.spawn_failed"})
            self._after_exit(child, ExitCode.SOFTWARE)
            return
        child.started_at = self.clock.monotonic()
        self.forks.spawned(child.started_at)
        child.last_hb = child.started_at
        child.health = "unknown"
        self._fd_owner[child.pidfd] = ("pid", child)
        self._fd_owner[child.stderr_fd] = ("err", child)
        self.poller.register(child.pidfd, zmq.POLLIN)
        self.poller.register(child.stderr_fd, zmq.POLLIN)
        log.info("spawned %s pid %d", child.id, child.pid, extra={"event": "actor.spawned"})

    @property
    def forkserver(self) -> ForkServer | None:
        """The current fork server (None while retired, or without one)."""
        return self.forks.current

    def stop_child(self, child: Child, *, wanted: bool = False) -> None:
        """Ask ``child`` to stop (Stop, then SIGTERM, then SIGKILL on timeouts)."""
        child.wanted = wanted
        if child.state in (State.BACKOFF, State.FATAL, State.EXITED, State.DORMANT):
            child.set_state(State.STOPPED)
            return
        if child.pid == 0 or child.state == State.STOPPING:
            return
        child.set_state(State.STOPPING)
        self._send(child.id, b"stop")
        timeout = child.spec.shutdown_timeout_s or self.config.supervisor.shutdown_timeout_s
        child.kill_at = self.clock.monotonic() + timeout

    def kill_child(self, child: Child, reason: str) -> None:
        """SIGKILL a misbehaving child; the exit path restarts it."""
        log.warning("killing %s: %s", child.id, reason, extra={"event": "actor.killed"})
        child.detail = reason
        child.signal(signal.SIGKILL)

    def _on_exit(self, child: Child) -> None:
        if child.pidfd < 0:
            return
        for line in child.read_stderr():
            self._emit(line)
            self.ctl.follow(child.id, split_priority(line)[1])
        pidfd, stderr_fd = child.pidfd, child.stderr_fd
        code = child.try_reap()
        if code is None:
            return
        for fd in (pidfd, stderr_fd):
            self.poller.unregister(fd)
            self._fd_owner.pop(fd, None)
        self._after_exit(child, code)

    def _after_exit(self, child: Child, code: int) -> None:
        now = self.clock.monotonic()
        self._announce_down(child)
        cls = classify_exit(code)
        child.last_exit = describe_exit(code) + (
            f" ({child.detail})" if child.detail and cls == ExitClass.CRASH else ""
        )
        child.last_exit_class = str(cls)
        child.health = "unknown"
        log.info("%s exited: %s", child.id, child.last_exit, extra={"event": "actor.exited"})
        if child.idle_stopping and not self._stopping and not child.restart_pending:
            self._rest(child, dormancy.IDLE)
            return
        child.idle_stopping = False
        if child.state == State.STOPPING or not child.wanted:
            child.running_since = 0.0
            child.set_state(State.STOPPED)
            if child.restart_pending and not self._stopping:
                child.restart_pending = False
                child.restarts += 1
                self.start_child(child)
                return
            child.restart_pending = False
            self.ctl.notify_waiters(child)
            if child.id in self.removed_ids:
                del self.children[child.id]
            return
        if child.running_since and now - child.running_since >= self.config.supervisor.stable_after_s:
            child.attempt = 0
        child.running_since = 0.0
        if cls == ExitClass.CONFIG:
            self._give_up(child, "configuration error: not restarted")
            return
        if cls == ExitClass.NORMAL and child.spec.activation == "on-demand":
            self._rest(child, dormancy.IDLE)  # it went idle by itself: the next request wakes it
            return
        if cls == ExitClass.NORMAL and child.spec.restart != "permanent":
            child.set_state(State.EXITED)
            self.ctl.notify_waiters(child)
            return
        if child.spec.restart == "temporary":
            child.set_state(State.EXITED)
            self.ctl.notify_waiters(child)
            return
        if cls == ExitClass.UNAVAILABLE:
            child.set_state(State.BACKOFF)
            child.next_start = now + min(self.config.supervisor.parole_s, 5.0 * (2 ** min(child.attempt, 6)))
            child.attempt += 1
            return
        if child.window.add(now):
            self._give_up(child, "restart intensity exceeded")
            return
        delay = backoff_delay(
            child.attempt, self.config.supervisor.backoff_base_s, self.config.supervisor.backoff_cap_s, self.rng
        )
        child.attempt += 1
        child.restarts += 1
        child.set_state(State.BACKOFF)
        if child.id == FREEZE_OWNER and self.frozen():
            # only a running lifecycle can thaw (its marker tells the new one what was frozen):
            # holding it back until the freeze deadline left the guest frozen for the lease
            child.next_start = now
        else:
            child.next_start = max(now + delay, self.frozen_until)

    def start_or_rest(self, child: Child) -> None:
        """Start ``child`` unless this guest does not need it yet (then DORMANT, saying why)."""
        reason = dormancy.initial_reason(child.spec, self.protocols)
        if reason:
            self._rest(child, reason)
        else:
            self.start_child(child)

    def _rest(self, child: Child, reason: str) -> None:
        child.idle_stopping = False
        child.running_since = 0.0
        child.dormant_reason = reason
        child.health = "dormant"
        child.detail = reason
        child.set_state(State.DORMANT)
        log.info("%s is dormant: %s", child.id, reason, extra={"event": "actor.dormant", "reason": reason})
        self.ctl.notify_waiters(child)

    def _idle_stop(self, child: Child, now: float) -> None:
        idle_s = round(now - child.idle.active_at, 1)
        log.info(
            "%s idle for %s s: stopped until the next request",
            child.id,
            idle_s,
            extra={"event": "actor.idle_stop", "idle_s": idle_s},
        )
        self.stop_child(child)
        child.idle_stopping = True

    def _announce_down(self, gone: Child) -> None:
        """Tell the other actors that ``gone`` exited: what they had sent on its lane is lost
        with it, and they answer those requests at once instead of at their deadline."""
        for other in self.children.values():
            if other is not gone and other.pid and other.state in (State.RUNNING, State.STARTING):
                self._send(other.id, b"down", gone.id.encode())

    def _give_up(self, child: Child, why: str) -> None:
        child.set_state(State.FATAL)
        child.detail = why
        log.error("%s is FATAL: %s", child.id, why, extra={"event": "actor.fatal"})
        self.ctl.notify_waiters(child)
        if child.spec.essential:
            log.error("essential actor %s gave up; stopping the agent", child.id, extra={"event": "agent.escalate"})
            self.exit_code = ExitCode.SOFTWARE
            self.begin_shutdown()

    def reload(self, config: AgentConfig) -> dict[str, list[str]]:
        """Apply a new configuration: start added actors, stop removed, restart changed ones."""
        return reloading.apply(self, config)

    def frozen(self) -> bool:
        """True while the guest's filesystems are frozen (no restarts, no disk writes)."""
        return self.clock.monotonic() < self.frozen_until

    # --- control plane ------------------------------------------------------------------------
    def _send(self, actor_id: str, verb: bytes, payload: bytes = b"") -> None:
        self.plane.send(actor_id, verb, payload)

    # --- loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        """Start every child and supervise until stopped; returns the exit code."""
        signal.set_wakeup_fd(self._sig_w.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda *_: None)
        for child in self.children.values():
            self.start_or_rest(child)
        self._last_tick = self.clock.monotonic()
        while self.running:
            for item, _ in self.poller.poll(self._timeout_ms()):
                if item is self.plane.sock:
                    self.plane.drain()
                elif item is self.ctl.sock:
                    self.ctl.drain()
                elif item == self._sig_r.fileno():
                    self._on_signals()
                elif isinstance(item, int) and item in self._fd_owner:
                    kind, child = self._fd_owner[item]
                    if kind == "pid":
                        self._on_exit(child)
                    else:
                        for line in child.read_stderr():
                            self._emit(line)
                            self.ctl.follow(child.id, split_priority(line)[1])
            self._tick()
            self.ctl.notify_waiters()
        self.close()
        return self.exit_code

    def _timeout_ms(self) -> int:
        """Wake for the next backoff restart on time (else every 50 ms for the watchdogs)."""
        now = self.clock.monotonic()
        due = [c.next_start for c in self.children.values() if c.state == State.BACKOFF and c.wanted]
        if not due:
            return 50
        return max(0, min(50, int((min(due) - now) * 1000) + 1))

    def _tick(self) -> None:
        now = self.clock.monotonic()
        if now - self._last_tick > _STALL_S:
            self._forgive_stall(now, now - self._last_tick)
        self._last_tick = now
        hb_timeout = self.config.agent.heartbeat_timeout_s * (10 if self.frozen() else 1)
        for child in self.children.values():
            if child.state == State.BACKOFF and child.wanted and now >= child.next_start and not self.stopping_all():
                if not self.frozen() or child.id == FREEZE_OWNER:
                    self.start_child(child)
            elif child.state == State.STARTING:
                limit = child.spec.start_timeout_s or self.config.supervisor.start_timeout_s
                if now - child.started_at > limit and not child.kill_at:
                    child.kill_at = now
                    self.kill_child(child, "did not become ready in time")
            elif child.state == State.RUNNING and now - child.last_hb > hb_timeout:
                child.last_hb = now
                self.kill_child(child, "watchdog: no heartbeat")
            elif (
                child.state == State.RUNNING
                and child.idle.due(child.spec, now)
                and not self.frozen()  # a frozen lifecycle holds the freeze lease: never idle
                and not self._stopping
            ):
                self._idle_stop(child, now)
            elif child.state == State.STOPPING and child.kill_at and now > child.kill_at:
                child.signal(signal.SIGKILL if child.term_sent else signal.SIGTERM)
                child.term_sent = True
                child.kill_at = now + 2.0
        self.readiness.tick(self, now)
        self.forks.retire_if_idle(now, starting=any(c.state == State.STARTING for c in self.children.values()))
        if self._stopping and all(c.pid == 0 for c in self.children.values()):
            self.running = False
        elif self._stopping:
            self._stop_next()

    _stopping = False
    _last_tick = math.inf

    def _forgive_stall(self, now: float, gap: float) -> None:
        """The loop ticks every 50 ms; a gap of seconds means the supervisor itself did not run
        (the VM was paused or migrated, the host starved the guest of CPU) and, most likely,
        neither did its children. Their silence during the gap is not held against them: the
        watchdog, start and stop clocks move on by the gap instead of killing every actor."""
        log.warning(
            "supervisor did not run for %.1f s: watchdog clocks moved on",
            gap,
            extra={"event": "supervisor.stalled", "stall_s": round(gap, 3)},
        )
        for child in self.children.values():
            child.last_hb += gap
            if child.state == State.STARTING:
                child.started_at += gap
            if child.kill_at:
                child.kill_at += gap

    def stopping_all(self) -> bool:
        """True once the whole agent is shutting down."""
        return self._stopping

    def begin_shutdown(self) -> None:
        """Stop every child in reverse start order, then leave the loop."""
        if not self._stopping:
            log.info("stopping the agent", extra={"event": "agent.stopping"})
            self.notifier.notify("STOPPING=1")
        self._stopping = True
        for child in self.children.values():
            child.wanted = False
        self._stop_next()

    def _stop_next(self) -> None:
        """Stop children one at a time, last started first (lifecycle thaws before it goes)."""
        for child in reversed(list(self.children.values())):
            if child.pid != 0:
                if child.state != State.STOPPING:
                    self.stop_child(child)
                return
            if child.state != State.STOPPED:
                child.set_state(State.STOPPED)

    def _on_signals(self) -> None:
        try:
            data = self._sig_r.recv(64)
        except BlockingIOError:
            return
        for signum in data:
            if signum in (signal.SIGTERM, signal.SIGINT):
                if self.frozen():
                    log.warning("stop deferred: filesystems are frozen", extra={"event": "agent.stop_deferred"})
                self.begin_shutdown()
            elif signum == signal.SIGHUP:
                self.ctl.reload()

    def _emit(self, line: str) -> None:
        """Re-emit a child's log line on our stderr (journald), buffered while frozen; its
        ``<N>`` priority is kept for the journal only."""
        if not self.journal:
            line = split_priority(line)[1]
        if self.log_handler is not None and self.log_handler.is_frozen():
            self.log_handler.hold_line(line)
            return
        with contextlib.suppress(OSError):
            sys.stderr.write(line + "\n")

    def status(self) -> dict[str, Any]:
        """Cached state of every actor (never asks an actor anything)."""
        return report.status_of(self)

    def close(self) -> None:
        """Close sockets; the event proxy thread dies with the process."""
        self.notifier.notify("STOPPING=1")
        logging.getLogger().removeHandler(self.own_log)
        signal.set_wakeup_fd(-1)
        self.ctl.close()
        self.plane.close()
        self.forks.close()
        self._sig_r.close()
        self._sig_w.close()
        time.sleep(0)
        for path in (self.layout.control, self.layout.ctl, self.layout.events_in, self.layout.events_out):
            Path(path).unlink(missing_ok=True)

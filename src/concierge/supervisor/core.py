"""The root supervisor loop: spawn, watch, restart, stop; one poller over everything.

One thread polls the control ROUTER (actor handshakes and heartbeats), the operator socket,
pidfds (immediate exit detection), child stderr pipes and a signal wake-up fd. Operator
commands answer from cached state, so a stuck actor can never hang ``concierge status``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import zmq
import zmq.devices

from concierge import __version__
from concierge.clock import Clock, MonotonicClock
from concierge.config.schema import AgentConfig, memory_limits
from concierge.errors import ExitCode, ProtocolError
from concierge.logs import FreezableHandler
from concierge.runtime import envelope, sockets
from concierge.runtime.endpoints import RuntimeLayout
from concierge.supervisor.children import Child, make_rng
from concierge.supervisor.control import ControlServer
from concierge.supervisor.forkserver import ForkServer
from concierge.supervisor.notify import SystemdNotifier
from concierge.supervisor.policy import ExitClass, RestartWindow, backoff_delay, classify_exit, describe_exit
from concierge.supervisor.state import State

log = logging.getLogger(__name__)
#: a supervisor tick this much later than due means the supervisor stood still (see _tick)
_STALL_S = 1.0


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
    ) -> None:
        self.config = config
        self.layout = layout
        self.clock = clock or MonotonicClock()
        self.rng = make_rng()
        self.log_handler = log_handler
        self.forkserver = forkserver
        self.config_loader = config_loader
        self.started_at = self.clock.monotonic()
        self.children: dict[str, Child] = {}
        self._extra_settings = settings
        self._removed: set[str] = set()
        self._apply_catalog(config, settings)
        self.frozen_until = 0.0
        self.exit_code = 0
        self.running = True
        self.notifier = SystemdNotifier()
        self.ready_sent = False
        self.zctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.control = sockets.router(self.zctx, layout.url(layout.control))
        self.ctl = ControlServer(self, self.zctx)
        self.proxy = zmq.devices.ThreadProxy(zmq.XSUB, zmq.XPUB)  # type: ignore[no-untyped-call]
        self.proxy.bind_in(layout.url(layout.events_in))
        self.proxy.bind_out(layout.url(layout.events_out))
        self.proxy.start()
        self.poller = zmq.Poller()
        self.poller.register(self.control, zmq.POLLIN)
        self.poller.register(self.ctl.sock, zmq.POLLIN)
        self._sig_r, self._sig_w = socket.socketpair()
        self._sig_r.setblocking(False)
        self._sig_w.setblocking(False)
        self.poller.register(self._sig_r.fileno(), zmq.POLLIN)
        self._fd_owner: dict[int, tuple[str, Child]] = {}

    def _apply_catalog(self, config: AgentConfig, settings: dict[str, dict[str, Any]]) -> None:
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
        if self.frozen() and child.id != "lifecycle":
            child.set_state(State.BACKOFF)
            child.next_start = self.frozen_until
            return
        child.set_state(State.STARTING)
        child.wanted = True
        child.kill_at = 0.0
        child.term_sent = False
        child.detail = ""
        try:
            child.spawn(self.layout.root, self.forkserver)
        except OSError as err:
            log.error("cannot spawn %s: %s", child.id, err, extra={"event": "supervisor.spawn_failed"})
            self._after_exit(child, ExitCode.SOFTWARE)
            return
        child.started_at = self.clock.monotonic()
        child.last_hb = child.started_at
        child.health = "unknown"
        self._fd_owner[child.pidfd] = ("pid", child)
        self._fd_owner[child.stderr_fd] = ("err", child)
        self.poller.register(child.pidfd, zmq.POLLIN)
        self.poller.register(child.stderr_fd, zmq.POLLIN)
        log.info("spawned %s pid %d", child.id, child.pid, extra={"event": "actor.spawned"})

    def stop_child(self, child: Child, *, wanted: bool = False) -> None:
        """Ask ``child`` to stop (Stop, then SIGTERM, then SIGKILL on timeouts)."""
        child.wanted = wanted
        if child.state in (State.BACKOFF, State.FATAL, State.EXITED):
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
        if child.state == State.STOPPING or not child.wanted:
            child.set_state(State.STOPPED)
            if child.restart_pending and not self._stopping:
                child.restart_pending = False
                child.restarts += 1
                self.start_child(child)
                return
            child.restart_pending = False
            self.ctl.notify_waiters(child)
            if child.id in self._removed:
                del self.children[child.id]
            return
        if child.running_since and now - child.running_since >= self.config.supervisor.stable_after_s:
            child.attempt = 0
        child.running_since = 0.0
        if cls == ExitClass.CONFIG:
            self._give_up(child, "configuration error: not restarted")
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
        child.next_start = max(now + delay, self.frozen_until)

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
        old = self.children
        self.config = config
        fresh: dict[str, Child] = {}
        self.children = fresh
        self._apply_catalog(config, self._extra_settings)
        added, changed, removed = [], [], []
        for actor_id, child in list(fresh.items()):
            previous = old.get(actor_id)
            if previous is None:
                added.append(actor_id)
                continue
            if previous.spec != child.spec or previous.settings != child.settings:
                changed.append(actor_id)
                previous.spec, previous.settings, previous.window = child.spec, child.settings, child.window
            fresh[actor_id] = previous
        for actor_id, previous in old.items():
            if actor_id not in fresh:
                removed.append(actor_id)
                fresh[actor_id] = previous
                self._removed.add(actor_id)
                self.stop_child(previous)
                if previous.pid == 0:
                    del fresh[actor_id]
        for actor_id in added:
            self.start_child(fresh[actor_id])
        for actor_id in changed:
            child = fresh[actor_id]
            if child.pid:
                child.restart_pending = True
                self.stop_child(child, wanted=True)
            else:
                self.start_child(child)
        log.info("config reloaded", extra={"event": "agent.reloaded"})
        return {"added": added, "changed": changed, "removed": removed}

    def frozen(self) -> bool:
        """True while the guest's filesystems are frozen (no restarts, no disk writes)."""
        return self.clock.monotonic() < self.frozen_until

    # --- control plane ------------------------------------------------------------------------
    def _send(self, actor_id: str, verb: bytes, payload: bytes = b"") -> None:
        # not connected (yet or any more): the pidfd and timeout paths handle it
        with contextlib.suppress(zmq.ZMQError):
            self.control.send_multipart([actor_id.encode(), verb, payload], zmq.NOBLOCK)

    def _drain_control(self) -> None:
        while True:
            try:
                rid, verb, *rest = self.control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            child = self.children.get(rid.decode(errors="replace"))
            if child is None or child.pid == 0:
                continue
            try:
                payload = envelope.decode_value(rest[0]) if rest and rest[0] else {}
            except ProtocolError:
                continue
            now = self.clock.monotonic()
            child.last_hb = now
            if verb == b"hello":
                if isinstance(payload, dict) and payload.get("pid") != child.pid:
                    log.warning("hello from a stale process for %s", child.id, extra={"event": "actor.stale_hello"})
                    continue
                self._send(child.id, b"welcome", envelope.encode_value(self._welcome(child)))
            elif verb == b"ready":
                if child.state == State.STARTING:
                    child.set_state(State.RUNNING)
                    child.running_since = now
                    child.health = "ok"
                    self.ctl.notify_waiters(child)
                    if self.frozen():
                        self._send(child.id, b"frozen", b"1")
            elif verb == b"hb" and isinstance(payload, dict):
                child.health = str(payload.get("health", "unknown"))
                child.detail = str(payload.get("detail", ""))
                child.counters = dict(payload.get("counters", {}))
                self._send(child.id, b"ack")
                if payload.get("stuck") and child.state == State.RUNNING and not self.frozen():
                    self.kill_child(child, child.detail or "watchdog: unresponsive actor thread")
            elif verb == b"note" and isinstance(payload, dict):
                self._on_note(child, payload)

    def _welcome(self, child: Child) -> dict[str, Any]:
        agent = self.config.agent
        return {
            "id": child.id,
            "entry": child.spec.entry,
            "settings": child.settings,
            "agent": {"state_dir": agent.state_dir or str(self.layout.state), "input_sink": agent.input_sink},
            "heartbeat_interval_s": agent.heartbeat_interval_s,
            "actor_unresponsive_s": agent.actor_unresponsive_s,
            "lane_spin_us": agent.lane_spin_us,
            "memory": memory_limits(agent, child.spec),
            "log_format": agent.log_format,
            "log_level": agent.log_level,
        }

    def _on_note(self, child: Child, note: dict[str, Any]) -> None:
        if note.get("type") == "freeze.state":
            body = note.get("body") or {}
            frozen = bool(body.get("frozen"))
            deadline = float(body.get("deadline_s", 600.0))
            self.frozen_until = self.clock.monotonic() + deadline if frozen else 0.0
            log.info("filesystems %s", "frozen" if frozen else "thawed", extra={"event": "agent.freeze_state"})
            if self.log_handler is not None:
                self.log_handler.set_frozen(frozen)
            for other in self.children.values():
                if other.pid:
                    self._send(other.id, b"frozen", b"1" if frozen else b"0")

    # --- loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        """Start every child and supervise until stopped; returns the exit code."""
        signal.set_wakeup_fd(self._sig_w.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda *_: None)
        for child in self.children.values():
            self.start_child(child)
        self._last_tick = self.clock.monotonic()
        while self.running:
            for item, _ in self.poller.poll(self._timeout_ms()):
                if item is self.control:
                    self._drain_control()
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
                            self.ctl.follow(child, line)
            self._tick()
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
                if not self.frozen() or child.id == "lifecycle":
                    self.start_child(child)
            elif child.state == State.STARTING:
                limit = child.spec.start_timeout_s or self.config.supervisor.start_timeout_s
                if now - child.started_at > limit and not child.kill_at:
                    child.kill_at = now
                    self.kill_child(child, "did not become ready in time")
            elif child.state == State.RUNNING and now - child.last_hb > hb_timeout:
                child.last_hb = now
                self.kill_child(child, "watchdog: no heartbeat")
            elif child.state == State.STOPPING and child.kill_at and now > child.kill_at:
                child.signal(signal.SIGKILL if child.term_sent else signal.SIGTERM)
                child.term_sent = True
                child.kill_at = now + 2.0
        self._systemd(now)
        if self._stopping and all(c.pid == 0 for c in self.children.values()):
            self.running = False
        elif self._stopping:
            self._stop_next()

    _stopping = False
    _all_running_logged = False
    _last_watchdog = 0.0
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

    def _systemd(self, now: float) -> None:
        if not self.ready_sent and all(c.state == State.RUNNING for c in self.children.values() if c.spec.essential):
            self.ready_sent = True
            self.notifier.notify("READY=1", f"STATUS=running {len(self.children)} actors")
            log.info("agent ready", extra={"event": "agent.ready"})
        if not self._all_running_logged and all(c.state == State.RUNNING for c in self.children.values()):
            self._all_running_logged = True
            elapsed_ms = round((now - self.started_at) * 1000, 1)
            since_exec_ms = round(_since_exec_s() * 1000)
            log.info(
                "all actors running after %s ms (%s ms since the process started)",
                elapsed_ms,
                since_exec_ms,
                extra={"event": "agent.all_running", "elapsed_ms": elapsed_ms, "since_exec_ms": since_exec_ms},
            )
        interval = self.notifier.watchdog_interval_s()
        if interval and now - self._last_watchdog >= interval:
            self._last_watchdog = now
            self.notifier.notify("WATCHDOG=1")

    def _emit(self, line: str) -> None:
        """Re-emit a child's log line on our stderr (journald), buffered while frozen."""
        if self.log_handler is not None and self.log_handler.is_frozen():
            self.log_handler.hold_line(line)
            return
        with contextlib.suppress(OSError):
            sys.stderr.write(line + "\n")

    def status(self) -> dict[str, Any]:
        """Cached state of every actor (never asks an actor anything)."""
        now = self.clock.monotonic()
        actors = []
        for child in self.children.values():
            actors.append(
                {
                    "id": child.id,
                    "state": str(child.state),
                    "pid": child.pid or None,
                    "restarts": child.restarts,
                    "restarts_recent": child.window.recent(now),
                    "uptime_s": round(now - child.running_since, 3) if child.running_since else 0.0,
                    "last_exit": child.last_exit,
                    "health": child.health,
                    "detail": child.detail,
                    "heartbeat_age_s": round(now - child.last_hb, 3) if child.pid else None,
                    "essential": child.spec.essential,
                    "waiting": child.state == State.BACKOFF and child.last_exit_class == "unavailable",
                    "counters": child.counters,
                }
            )
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(now - self.started_at, 3),
            "frozen": self.frozen(),
            "runtime_dir": str(self.layout.root),
            "actors": actors,
        }

    def close(self) -> None:
        """Close sockets; the event proxy thread dies with the process."""
        self.notifier.notify("STOPPING=1")
        signal.set_wakeup_fd(-1)
        self.ctl.close()
        self.control.close(0)
        if self.forkserver is not None:
            self.forkserver.close()
        self._sig_r.close()
        self._sig_w.close()
        time.sleep(0)
        for path in (self.layout.control, self.layout.ctl, self.layout.events_in, self.layout.events_out):
            Path(path).unlink(missing_ok=True)


def _since_exec_s() -> float:
    """Seconds since this process was created (interpreter start and imports included), from
    its start time in clock ticks since boot; 0 when /proc cannot tell."""
    try:
        with open("/proc/self/stat") as stat:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            up_s = float(uptime.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, up_s - start_ticks / os.sysconf("SC_CLK_TCK"))

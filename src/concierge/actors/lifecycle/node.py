"""LifecycleNode (config id ``lifecycle``): power, suspend, quiesce with a lease, fstrim, time,
vCPUs and memory blocks, served to every front-end (QGA, oVirt) from one place.

Every handler that can block (hooks, FIFREEZE, logind, sysfs, hwclock) runs on the worker pool,
so ``lifecycle.freeze_status`` and ``lifecycle.thaw`` answer while a freeze hook is slow.
The freeze lease and host-channel loss end a freeze from timer threads; a marker left by a
killed predecessor is thawed at start. The API is documented in ``messages.py``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from concierge.actors.lifecycle import messages as m
from concierge.actors.lifecycle.clockset import ClockError, TimeSetter, get_time_ns
from concierge.actors.lifecycle.clockwatch import ClockWatch, chrony_makestep, sample_clocks
from concierge.actors.lifecycle.fsops import trim_all
from concierge.actors.lifecycle.hooks import HookRunner
from concierge.actors.lifecycle.hotplug import Hotplug, HotplugError
from concierge.actors.lifecycle.marker import FreezeMarker
from concierge.actors.lifecycle.mounts import Mount, local_mounts
from concierge.actors.lifecycle.power import Power, PowerError
from concierge.actors.lifecycle.power_journal import PowerJournal, PowerRequest
from concierge.actors.lifecycle.quiesce import QuiesceError, Quiescer
from concierge.actors.lifecycle.settings import LifecycleSettings
from concierge.errors import ActorError, ConfigError, ErrorCode
from concierge.logs import FreezableHandler
from concierge.runtime.node import Incoming
from concierge.runtime.service import ServiceNode, handler

log = logging.getLogger(__name__)

S = TypeVar("S")

_FROZEN_TEXT = "filesystems are frozen; only guest-fsfreeze-status and guest-fsfreeze-thaw work"


def _convert(body: Any, kind: type[S]) -> S:
    try:
        return msgspec.convert(body if body is not None else {}, kind)
    except msgspec.ValidationError as err:
        raise ActorError(ErrorCode.BAD_REQUEST, str(err)) from err


class LifecycleNode(ServiceNode):
    """The lifecycle actor process."""

    worker_threads = 6

    def on_start(self) -> None:
        """Load settings, build the services, subscribe to host events, recover a freeze."""
        try:
            self.settings = msgspec.convert(dict(self.ctx.settings), LifecycleSettings)
        except msgspec.ValidationError as err:
            raise ConfigError(str(err), key=f"actors.{self.ctx.actor_id}.settings") from err
        s = self.settings
        self.hooks = HookRunner(s.fsfreeze_hook, s.hook_dir, s.hook_timeout_s)
        self.quiescer = Quiescer(
            mounts=self.candidates,
            hooks=self.hooks,
            marker=FreezeMarker(s.state_dir),
            lease_s=s.freeze_lease_s,
            listener=self,
        )
        self.power = Power(
            backend=s.power_backend,
            dbus_address=s.dbus_address,
            bin_path=s.bin_path,
            sysfs_root=s.sysfs_root,
            timeout_s=s.helper_timeout_s,
        )
        self.power_journal = PowerJournal(s.state_dir)
        #: names this run in the power journal: a predecessor's request is resumed at start, but
        #: never our own one received while that start-up check still ran
        self._run = os.urandom(8).hex()
        self.hotplug = Hotplug(s.sysfs_root)
        self.time_setter = TimeSetter(s.hwclock, s.helper_timeout_s)
        self._freeze_channel: str | None = None
        self._grace: dict[str, threading.Timer] = {}
        self._grace_lock = threading.Lock()
        self.recovered = threading.Event()
        #: filesystems a killed predecessor left frozen and this run thawed, until a thaw reports them
        self._recovered_count = 0
        self.clock_watch: ClockWatch | None = None
        if s.clock_watch_s > 0:
            self.clock_watch = ClockWatch(
                interval_s=s.clock_watch_s,
                threshold_s=s.clock_step_threshold_s,
                resync_from_rtc=lambda: self.time_setter.set_time(None),
                on_step=self._clock_stepped,
                sample=lambda: sample_clocks(s.sysfs_root),
                ntp_step=chrony_makestep if s.clock_resync == "auto" else lambda: False,
            )
            self.clock_watch.start()
        self.ctx.subscribe("host.")
        threading.Thread(target=self._recover, name="lifecycle-recover", daemon=True).start()

    def candidates(self) -> list[Mount]:
        """Local freezable/trimmable filesystems, after the ``only_mountpoints`` filter."""
        s = self.settings
        return local_mounts(s.mount_table, only=s.only_mountpoints, extra_skip=s.skip_fstypes)

    def _recover(self) -> None:
        try:
            count = self.quiescer.recover()
            if count is not None:
                self._recovered_count = count
                self.ctx.count("freeze.recovered")
        except Exception:  # thread boundary: a failed recovery is logged, the actor keeps serving
            log.exception("freeze recovery failed", extra={"event": "freeze.recover_failed"})
            self.ctx.set_health("degraded", "freeze recovery failed")
        try:
            self._resume_power_request()
        except Exception:  # thread boundary, as above
            log.exception("power request recovery failed", extra={"event": "power.resume_failed"})
        finally:
            self.recovered.set()  # start-up checks done (both): handlers waiting on it go on

    def _resume_power_request(self) -> None:
        """Carry out a shutdown a killed predecessor received but never finished."""
        request = self.power_journal.pending()
        if request is not None and request.run == self._run:
            # this run's own guest-shutdown, received while recovery ran (a dormant lifecycle is
            # started by that very request): its handler carries it out, not a second time here
            return
        if request is None:
            self.power_journal.clear()  # nothing, or stale / from another boot: forget it
            return
        log.warning(
            "a previous run received guest-shutdown (%s) and died before carrying it out; doing it now",
            request.mode,
            extra={"event": "power.resumed"},
        )
        self.ctx.count("power.resumed")
        try:
            self.power.shutdown(request.mode, request.delay_s, request.message)
        except PowerError as err:
            log.error("resumed shutdown failed: %s", err, extra={"event": "power.resume_failed"})
        finally:
            self.power_journal.clear()

    def _clock_stepped(self, cause: str, seconds: float, action: str) -> None:
        self.ctx.count("time.steps")
        body = {"cause": cause, "seconds": seconds, "action": action}
        self.ctx.publish(m.EVT_CLOCK_STEPPED, body)

    def idle_hold(self) -> str:
        """A freeze (or one in progress) lives in this process: its lease and the host's thaw
        need it running. The supervisor also never idle-stops anything while it knows of a
        freeze; this covers the moments before its note arrives. The clock watch (when
        ``clock_watch_s`` > 0) is a background duty: it keeps the actor up once started."""
        if self.quiescer.active():
            return "filesystems frozen"
        return "clock watch" if self.clock_watch is not None else ""

    def on_stop(self) -> None:
        """Never leave the guest frozen behind a stopping actor."""
        if self.clock_watch is not None:
            self.clock_watch.stop()
        self._cancel_grace()
        self.quiescer.close()

    # --- QuiesceListener (called from worker / timer threads) ---------------------------------
    def freeze_state(self, frozen: bool, deadline_s: float) -> None:
        """Buffer our logs and tell the supervisor (before FIFREEZE / after FITHAW)."""
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, FreezableHandler)]
        if frozen:
            for h in handlers:
                h.set_frozen(True)
        self.ctx.notify_supervisor(m.NOTE_FREEZE_STATE, {"frozen": frozen, "deadline_s": deadline_s if frozen else 0.0})
        if not frozen:
            for h in handlers:
                h.set_frozen(False)

    def frozen(self, count: int, mountpoints: list[str], deadline_s: float) -> None:
        """Publish ``lifecycle.frozen``."""
        self.ctx.count("freeze.frozen")
        self.ctx.publish(m.EVT_FROZEN, {"count": count, "mountpoints": mountpoints, "deadline_s": deadline_s})

    def thawed(self, count: int, reason: str) -> None:
        """Publish ``lifecycle.thawed`` and forget disconnect timers."""
        self._cancel_grace()
        self.ctx.count(f"freeze.thawed.{reason}")
        self.ctx.publish(m.EVT_THAWED, {"count": count, "reason": reason})

    # --- quiesce ------------------------------------------------------------------------------
    def _refuse_if_frozen(self) -> None:
        if self.quiescer.status() == "frozen":
            raise ActorError(ErrorCode.FROZEN, _FROZEN_TEXT)

    @handler(m.FREEZE, blocking=True)
    def on_freeze(self, msg: Incoming) -> int:
        """Freeze all (or the listed) filesystems; the lease starts when it succeeds."""
        req = _convert(msg.body, m.FreezeRequest)
        self.recovered.wait(timeout=self.settings.hook_timeout_s + 5)
        self._freeze_channel = req.channel
        try:
            return self.quiescer.freeze(req.mountpoints)
        except QuiesceError as err:
            code = ErrorCode.FROZEN if err.already_frozen else ErrorCode.INTERNAL
            raise ActorError(code, err.message) from err

    @handler(m.THAW, blocking=True)
    def on_thaw(self, msg: Incoming) -> int:
        """Thaw now (cancels a freeze in progress).

        A host whose thaw reached us after a crash of the previous run (the transport re-sends it
        once we are back) gets the number of filesystems the recovery thawed, as if the thaw
        had done it: they were frozen at its request and are thawed now."""
        self.recovered.wait(timeout=self.settings.hook_timeout_s + 5)
        count = self.quiescer.thaw("request")
        recovered, self._recovered_count = self._recovered_count, 0
        return count or recovered

    @handler(m.FREEZE_STATUS, inline=True)
    def on_freeze_status(self, msg: Incoming) -> str:
        """``frozen`` or ``thawed``, without waiting for anything (inline: backup tools poll it;
        the quiescer's state lock is never held while blocking)."""
        return self.quiescer.status()

    @handler(m.FSTRIM, blocking=True)
    def on_fstrim(self, msg: Incoming) -> dict[str, Any]:
        """FITRIM every local filesystem; per-path results."""
        req = _convert(msg.body, m.FstrimRequest)
        self._refuse_if_frozen()
        try:
            mounts = self.candidates()
        except OSError as err:
            text = f"failed to open mtab file: {err.strerror}"
            raise ActorError(ErrorCode.INTERNAL, text) from err
        return trim_all(mounts, req.minimum)

    # --- host channel loss --------------------------------------------------------------------
    @handler("host.disconnected")
    def on_host_disconnected(self, msg: Incoming) -> None:
        """A QGA channel went away: thaw after the grace period unless it comes back.

        Also during a freeze still running its hooks: the requester will never send the thaw.
        """
        body = msg.body if isinstance(msg.body, dict) else {}
        if body.get("protocol") != "qga" or not self.settings.thaw_on_disconnect:
            return
        if not self.quiescer.active():
            return
        channel = str(body.get("channel", ""))
        if self._freeze_channel and channel != self._freeze_channel:
            return
        log.warning(
            "host channel %s lost while frozen; thawing in %g s",
            channel,
            self.settings.disconnect_grace_s,
            extra={"event": "freeze.channel_lost"},
        )
        timer = threading.Timer(self.settings.disconnect_grace_s, self._disconnect_thaw)
        timer.daemon = True
        with self._grace_lock:
            old = self._grace.pop(channel, None)
            self._grace[channel] = timer
        if old is not None:
            old.cancel()
        timer.start()

    @handler("host.connected")
    def on_host_connected(self, msg: Incoming) -> None:
        """The channel is back within the grace period: keep the freeze."""
        body = msg.body if isinstance(msg.body, dict) else {}
        with self._grace_lock:
            timer = self._grace.pop(str(body.get("channel", "")), None)
        if timer is not None:
            timer.cancel()

    def _disconnect_thaw(self) -> None:
        if self.quiescer.active():
            self.quiescer.thaw("disconnect")

    def _cancel_grace(self) -> None:
        with self._grace_lock:
            timers, self._grace = list(self._grace.values()), {}
        for timer in timers:
            timer.cancel()

    # --- power --------------------------------------------------------------------------------
    @handler(m.SHUTDOWN, blocking=True)
    def on_shutdown(self, msg: Incoming) -> None:
        """Power down / halt / reboot (QGA: no reply on success)."""
        req = _convert(msg.body, m.ShutdownRequest)
        self._refuse_if_frozen()
        # durable from here until the backend's verdict: a restart in between carries it out
        self.power_journal.record(PowerRequest(req.mode, req.delay_s, req.message, time.time(), self._run))
        try:
            self.power.shutdown(req.mode, req.delay_s, req.message)
        except PowerError as err:
            code = ErrorCode.BAD_REQUEST if "mode is invalid" in str(err) else ErrorCode.INTERNAL
            raise ActorError(code, str(err)) from err
        finally:
            self.power_journal.clear()

    @handler(m.SUSPEND, blocking=True)
    def on_suspend(self, msg: Incoming) -> None:
        """Suspend to ram / disk / hybrid, or an honest error."""
        req = _convert(msg.body, m.SuspendRequest)
        self._refuse_if_frozen()
        try:
            self.power.suspend(req.mode)
        except PowerError as err:
            raise ActorError(ErrorCode.UNAVAILABLE, str(err)) from err

    # --- time ---------------------------------------------------------------------------------
    @handler(m.GET_TIME, inline=True)
    def on_get_time(self, msg: Incoming) -> int:
        """Wall clock in ns (inline: one clock read, polled by management tools)."""
        return get_time_ns()

    @handler(m.SET_TIME, blocking=True)
    def on_set_time(self, msg: Incoming) -> None:
        """Set the clock (and the RTC), or load it from the RTC."""
        req = _convert(msg.body, m.SetTimeRequest)
        try:
            self.time_setter.set_time(req.time)
        except ClockError as err:
            raise ActorError(ErrorCode.INTERNAL, str(err)) from err

    # --- vCPUs and memory blocks --------------------------------------------------------------
    @handler(m.GET_VCPUS, blocking=True)
    def on_get_vcpus(self, msg: Incoming) -> list[dict[str, Any]]:
        """Every logical CPU."""
        return self._hotplug(self.hotplug.get_vcpus)

    @handler(m.SET_VCPUS, blocking=True)
    def on_set_vcpus(self, msg: Incoming) -> int:
        """Online/offline CPUs; the processed prefix length."""
        req = _convert(msg.body, m.SetVcpusRequest)
        items = [(v.logical_id, v.online) for v in req.vcpus]
        return self._hotplug(lambda: self.hotplug.set_vcpus(items))

    @handler(m.SET_CPUS, blocking=True)
    def on_set_cpus(self, msg: Incoming) -> dict[str, int]:
        """oVirt: keep ``count`` CPUs online."""
        req = _convert(msg.body, m.SetCpusRequest)
        return {"online": self._hotplug(lambda: self.hotplug.set_online_count(req.count))}

    @handler(m.GET_MEMORY_BLOCKS, blocking=True)
    def on_get_memory_blocks(self, msg: Incoming) -> list[dict[str, Any]]:
        """Every memory block."""
        return self._hotplug(self.hotplug.get_memory_blocks)

    @handler(m.SET_MEMORY_BLOCKS, blocking=True)
    def on_set_memory_blocks(self, msg: Incoming) -> list[dict[str, Any]]:
        """Online/offline memory blocks, one response each."""
        req = _convert(msg.body, m.SetMemoryBlocksRequest)
        items = [(b.phys_index, b.online) for b in req.mem_blks]
        return self._hotplug(lambda: self.hotplug.set_memory_blocks(items))

    @handler(m.GET_MEMORY_BLOCK_INFO, blocking=True)
    def on_get_memory_block_info(self, msg: Incoming) -> dict[str, int]:
        """The memory block size."""
        return self._hotplug(self.hotplug.get_memory_block_info)

    @staticmethod
    def _hotplug(call: Callable[[], S]) -> S:
        try:
            return call()
        except HotplugError as err:
            raise ActorError(ErrorCode.INTERNAL, str(err)) from err

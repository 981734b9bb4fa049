"""SessionGatewayNode: per-uid endpoints for session processes, and routing to the active one.

Runs as root (config id ``session``). Every socket is non-blocking and served on the bridge
thread; logind round trips run on a worker thread (``logind_worker.py``) and come back with
``call_soon``. Identity is the endpoint's uid plus SO_PEERCRED (never message content); PID
reuse is caught by comparing /proc/PID's uid and start time with the credentials at connect
time; a second agent for an already served session is refused. Policy lives in ``arbiter.py``,
the wire in ``framing.py``, frame validation in ``inbound.py``.

Every local user is a hostile peer of this root process: each frame is validated before use (a
bad one rejects that connection), every fd, timer and logind callback is guarded so nothing a
peer sends can raise into the bridge loop, and admission is capped per uid and overall (limits
in ``settings.py``, threat model in docs/security-gateway.md). Must not import zmq.
"""

from __future__ import annotations

import functools
import logging
import pwd
import resource
import socket
from collections.abc import Callable
from typing import Any

import msgspec

from concierge.actors.session import arbiter, inbound
from concierge.actors.session.admission import WarningThrottle, refuse
from concierge.actors.session.arbiter import Agent
from concierge.actors.session.connection import AgentConn
from concierge.actors.session.endpoints import Endpoint, open_endpoint, run_user_uids
from concierge.actors.session.identity import peer_of, proc_uid, still_same_process
from concierge.actors.session.logind import SessionInfo
from concierge.actors.session.logind_worker import LogindWorker, PollResult
from concierge.actors.session.settings import GatewaySettings, fd_budget_error
from concierge.errors import ConfigError
from concierge.runtime.node import POLLIN, Incoming, Node, NodeContext, TimerHandle

log = logging.getLogger(__name__)

_CACHED = ("spice.announce_capabilities", "spice.graphics_device_info", "spice.monitors_config")


class SessionGatewayNode(Node):
    """The ``session`` actor (root side of the per-user session split)."""

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        self.settings = GatewaySettings()
        self.endpoints: dict[int, Endpoint] = {}
        self.conns: dict[int, AgentConn] = {}
        self.active: Agent | None = None
        self.logind_ok = False
        self.logind_active = ""
        self.rejected = 0
        self._cache: dict[str, tuple[Any, tuple[bytes, ...]]] = {}
        self._guest_grabs: set[int] = set()
        self._endpoint_failed: set[int] = set()
        self._warnings = WarningThrottle()  # one refusal line per uid and poll period
        self._ready_sent: bool | None = None
        self._timer: TimerHandle | None = None
        self._logind: LogindWorker | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Validate settings, open endpoints, start watching logind."""
        try:
            self.settings = msgspec.convert(dict(self.ctx.settings), GatewaySettings)
        except msgspec.ValidationError as err:
            raise ConfigError(str(err), key=f"actors.{self.ctx.actor_id}.settings") from err
        problem = fd_budget_error(self.settings, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        if problem is not None:
            raise ConfigError(problem, key=f"actors.{self.ctx.actor_id}.settings.max_connections")
        self._logind = LogindWorker(
            self.ctx,
            self.settings.logind_bus,
            self.settings.poll_s,
            functools.partial(self._guarded, self._apply_logind),
            functools.partial(self._guarded, self._on_session),
        )
        self._logind.start()
        self._refresh_endpoints(set())
        self._push_geometry()
        self._tick()

    def stop(self) -> None:
        """Close every connection and endpoint."""
        if self._timer is not None:
            self._timer.cancel()
        for conn in list(self.conns.values()):
            conn.close("gateway stopping")
        for ep in self.endpoints.values():
            self.ctx.unwatch_fd(ep.sock.fileno())
            ep.close()
        self.endpoints.clear()
        if self._logind is not None:
            self._logind.stop()

    def _tick(self) -> None:
        """Periodic: re-read logind (worker thread) and the user list."""
        self._timer = self.ctx.call_later(self.settings.poll_s, self._tick)
        self._warnings.new_period()
        if self._logind is not None:
            self._logind.poll()

    def _guarded(self, callback: Callable[..., None], *args: Any) -> None:
        """Run a bridge callback; an exception is logged and counted, never raised into the loop."""
        try:
            callback(*args)
        except Exception as err:  # boundary: the loop serves every user
            self.ctx.count("session.callback_failed")
            log.exception(
                "session gateway callback failed: %s", type(err).__name__, extra={"event": "session.callback_failed"}
            )

    def _refresh_endpoints(self, extra: set[int]) -> None:
        uids = set(self.settings.users) | extra
        if self.settings.scan_run_user:
            uids |= run_user_uids(self.settings.run_user_dir)
        for uid in sorted(uids - set(self.endpoints)):
            try:
                gid = pwd.getpwuid(uid).pw_gid
            except KeyError:
                gid = uid
            try:
                ep = open_endpoint(self.ctx.runtime_dir, uid, gid)
            except OSError as err:  # e.g. another gateway holds the lock: retried every poll
                if uid not in self._endpoint_failed:  # once: a user can make theirs fail forever
                    self._endpoint_failed.add(uid)
                    log.warning("no endpoint for uid %d: %s", uid, err, extra={"event": "session.endpoint_failed"})
                continue
            self._endpoint_failed.discard(uid)
            self.endpoints[uid] = ep
            self.ctx.watch_fd(ep.sock.fileno(), functools.partial(self._guarded, self._accept, ep))
            log.info("endpoint for uid %d", uid, extra={"event": "session.endpoint"})

    # --- logind results (bridge) -----------------------------------------------------------------
    def _apply_logind(self, result: PollResult) -> None:
        self.logind_ok = result is not None
        extra: set[int] = set()
        if result is not None:
            self.logind_active, sessions, extra = result
            for conn in self.conns.values():
                info = sessions.get(conn.agent.session_id)
                if info is not None:
                    conn.agent.locked, conn.agent.session_class = info.locked, info.session_class
        self._refresh_endpoints(extra)
        self._rearbitrate()
        # the event plane is lossy: repeat the port-policy state every poll
        self.ctx.publish("session.spice_ready", {"ready": bool(self._ready_sent)})

    # --- connections -----------------------------------------------------------------------------
    def _accept(self, ep: Endpoint, revents: int = POLLIN) -> None:
        del revents
        while True:
            try:
                sock, _ = ep.sock.accept()
            except BlockingIOError:
                return
            except OSError as err:
                log.warning("accept failed: %s", err, extra={"event": "session.accept_failed"})
                return
            with sock:
                self._admit(ep, sock)

    def _admit(self, ep: Endpoint, sock: socket.socket) -> None:
        """Keep an accepted connection (the ``with`` in ``_accept`` then leaves it open) or refuse it."""
        sock.setblocking(False)
        peer = peer_of(sock)
        same_uid = sum(1 for c in self.conns.values() if c.peer.uid == peer.uid)
        s = self.settings
        refusal = arbiter.admission_refusal(
            peer.uid, ep.uid, same_uid, len(self.conns), per_uid=s.max_connections_per_uid, overall=s.max_connections
        )
        if refusal is not None:
            self.rejected += 1
            self.ctx.count("session.refused")
            if self._warnings.first(peer.uid):
                log.warning(
                    "refused pid %d uid %d: %s", peer.pid, peer.uid, refusal, extra={"event": "session.refused"}
                )
            refuse(sock, refusal)
            return
        conn = AgentConn(
            self.ctx,
            socket.socket(fileno=sock.detach()),
            peer,
            self._frame,
            self._closed,
            max_frame=s.max_frame_bytes,
            max_buffered=s.max_buffered_bytes,
        )
        self.conns[conn.agent.key] = conn
        conn.hello_timer = self.ctx.call_later(
            s.hello_timeout_s, functools.partial(self._guarded, self._hello_expired, conn)
        )
        if proc_uid(peer.pid) != peer.uid:
            self._reject(conn, "connecting process changed or exited (PID reuse)")

    def _hello_expired(self, conn: AgentConn) -> None:
        if not conn.closed and not conn.agent.ready:
            self._reject(conn, f"not welcomed within {self.settings.hello_timeout_s:g} s of connecting")

    def _frame(self, conn: AgentConn, type_: str, body: Any, blobs: tuple[bytes, ...]) -> None:
        agent = conn.agent
        if type_ == "protocol_error":
            self._reject(conn, f"bad frame: {body}")
            return
        if type_ == "hello":
            try:
                inbound.hello(body)
            except inbound.BadFrameError as err:
                self._reject(conn, str(err))
                return
            if agent.hello:
                return  # a second hello is ignored
            agent.hello = True
            if self._logind is not None:
                self._logind.lookup(agent.key, agent.pid, agent.uid)
            return
        if not agent.hello:
            self._reject(conn, f"{type_} before hello")
        elif type_ == "geometry":  # may arrive before the welcome: kept for when it is ready
            self._on_geometry(conn, body)
        elif type_ == "spice.send":
            self._on_agent_send(conn, body, blobs)
        else:
            self.ctx.count("session.unknown_frame")

    def _on_session(self, key: int, info: SessionInfo | None, with_logind: bool) -> None:
        conn = self.conns.get(key)
        if conn is None or conn.closed:
            return
        agent = conn.agent
        if not still_same_process(conn.peer):
            self._reject(conn, "connecting process changed or exited (PID reuse)")
            return
        if info is not None:
            if agent.uid not in (0, info.uid):
                self._reject(conn, "the process's session belongs to another user")
                return
            agent.session_id, agent.session_class, agent.locked = info.id, info.session_class, info.locked
        else:
            # No logind, or a process outside any session: one session per uid.
            agent.session_id = "" if with_logind else f"uid-{agent.uid}"
        if agent.session_id and (other := arbiter.duplicate_of(self._agents(), agent)) is not None:
            self._reject(conn, f"session {agent.session_id} already has an agent (pid {other.pid})")
            return
        agent.ready = True
        conn.welcomed()
        self.logind_ok = with_logind
        ids = (agent.pid, agent.uid, agent.session_id)
        log.info("agent pid %d uid %d session %s", *ids, extra={"event": "session.agent_attached"})
        conn.send(
            "welcome",
            {
                "uid": agent.uid,
                "pid": agent.pid,
                "session_id": agent.session_id,
                "session_class": agent.session_class,
                "active": False,
                "file_xfer": False,
            },
        )
        self._rearbitrate()

    def _on_geometry(self, conn: AgentConn, body: Any) -> None:
        try:
            monitors = inbound.geometry(body)
        except inbound.BadFrameError as err:
            self.ctx.count("session.bad_geometry")
            self._reject(conn, str(err))
            return
        conn.agent.monitors = list(monitors)
        if conn.agent is self.active:
            self._push_geometry()

    def _on_agent_send(self, conn: AgentConn, body: Any, blobs: tuple[bytes, ...]) -> None:
        try:
            kind, inner = inbound.spice_send(body)
        except inbound.BadFrameError as err:
            self.ctx.count("session.bad_send")
            self._reject(conn, str(err))
            return
        if conn.agent is not self.active:
            self.ctx.count("session.inactive_send")
            if kind == "clipboard_request":
                # an app pasting in an inactive session gets "no data" at once, as in vdagentd
                conn.send("spice.clipboard", {"selection": inner["selection"], "type": 0}, (b"",))
            return
        if kind in ("clipboard_grab", "clipboard_release"):
            sel = inner["selection"]
            (self._guest_grabs.add if kind == "clipboard_grab" else self._guest_grabs.discard)(sel)
        self.ctx.cast(self.settings.transport_actor, "spice.send", {"type": kind, "body": inner}, blobs=blobs)

    def _reject(self, conn: AgentConn, reason: str) -> None:
        self.rejected += 1
        self.ctx.count("session.rejected")
        peer = conn.peer
        if self._warnings.first(peer.uid):
            log.warning("rejected pid %d uid %d: %s", peer.pid, peer.uid, reason, extra={"event": "session.rejected"})
        conn.discard_output()
        conn.send("reject", {"reason": reason})
        conn.close(reason)

    def _closed(self, conn: AgentConn, reason: str) -> None:
        """AgentConn callback: forget the agent; re-arbitrate if it counted."""
        self.conns.pop(conn.agent.key, None)
        if conn.agent.ready:
            log.info(
                "agent pid %d gone: %s",
                conn.peer.pid,
                reason,
                extra={"event": "session.agent_detached"},
            )
            self._rearbitrate()

    def _agents(self) -> list[Agent]:
        return [c.agent for c in self.conns.values() if not c.closed]

    # --- arbitration -----------------------------------------------------------------------------
    def _rearbitrate(self) -> None:
        new = arbiter.pick_active(self._agents(), self.logind_active if self.logind_ok else None)
        old = self.active
        if new is old:
            if new is not None:
                self._notify_active(new)
            return
        self.active = new
        if old is not None and (conn := self.conns.get(old.key)) is not None:
            conn.send("active", {"active": False, "file_xfer": False})
        for sel in sorted(self._guest_grabs):  # the guest owner left: the client must forget it
            body = {"type": "clipboard_release", "body": {"selection": sel}}
            self.ctx.cast(self.settings.transport_actor, "spice.send", body)
        self._guest_grabs.clear()
        if new is not None:
            self._notify_active(new, resend=True)
        self._push_geometry()

    def _notify_active(self, agent: Agent, *, resend: bool = False) -> None:
        conn = self.conns.get(agent.key)
        if conn is None:
            return
        file_xfer = arbiter.file_xfer_refusal(agent) is None
        conn.send("active", {"active": True, "file_xfer": file_xfer})
        if resend:
            for type_ in _CACHED:
                if type_ in self._cache:
                    body, blobs = self._cache[type_]
                    conn.send(type_, body, blobs)

    def _push_geometry(self) -> None:
        monitors = self.active.monitors if self.active is not None else []
        self.ctx.cast(self.settings.input_actor, "input.geometry", {"monitors": monitors})
        ready = bool(monitors)
        self.ctx.set_health(
            "ok" if ready else "degraded",
            f"active {self.active.session_id} pid {self.active.pid}" if self.active else "no active agent",
        )
        if ready != self._ready_sent:
            self._ready_sent = ready
            self.ctx.publish("session.spice_ready", {"ready": ready})

    # --- actor messages --------------------------------------------------------------------------
    def handle(self, msg: Incoming) -> None:
        """``spice.*`` from the front-end go to the active agent; ``session.status`` answers."""
        if msg.type == "session.status" and msg.reply is not None:
            msg.reply.ok(self.status())
            return
        if msg.type == "session.geometry" and msg.reply is not None:
            msg.reply.ok({"monitors": self.active.monitors if self.active is not None else []})
            return
        if not msg.type.startswith("spice."):
            super().handle(msg)
            return
        if msg.type in _CACHED:
            self._cache[msg.type] = (msg.body, msg.blobs)
        if msg.type == "spice.client_disconnected":
            self._guest_grabs.clear()
        if msg.type == "spice.file_xfer_start":
            refusal = arbiter.file_xfer_refusal(self.active)
            if refusal is not None:
                xid = (msg.body or {}).get("id", 0)
                body = {
                    "type": "file_xfer_status",
                    "body": {"id": xid, "result": refusal, "data": b""},
                }
                self.ctx.cast(self.settings.transport_actor, "spice.send", body)
                return
        if self.active is None or (conn := self.conns.get(self.active.key)) is None:
            self.ctx.count("session.no_agent")
            return
        conn.send(msg.type, msg.body, msg.blobs)

    def status(self) -> dict[str, Any]:
        """Snapshot for ``session.status`` (and the operator's ``concierge status``)."""
        return {
            "endpoints": sorted(self.endpoints),
            "agents": [arbiter.agent_info(a, a is self.active) for a in self._agents() if a.ready],
            "active_session": self.active.session_id if self.active else "",
            "logind": self.logind_ok,
            "rejected": self.rejected,
            "connections": len(self.conns),
        }

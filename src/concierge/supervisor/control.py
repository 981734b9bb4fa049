"""The operator socket: JSON requests over ROUTER, answered from the supervisor's cached state.

Request ``{"v":1,"id":N,"cmd":"status","args":{}}``; reply ``{"v":1,"id":N,"ok":true,
"result":...}`` or ``{"ok":false,"error":{"code":...,"message":...}}``; streams (``logs -f``)
send several replies with ``"more": true``. Only root (and the admin group, if configured) can
connect: the socket file is 0600 (0660 with that group) in a directory only root writes to.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import zmq

from concierge import __version__
from concierge.errors import ConciergeError, ErrorCode
from concierge.runtime import sockets
from concierge.supervisor import procstat
from concierge.supervisor.state import State

if TYPE_CHECKING:
    from concierge.supervisor.children import Child
    from concierge.supervisor.core import Supervisor

log = logging.getLogger(__name__)

Handler = Callable[[bytes, int, dict[str, Any]], Any]
_NO_REPLY = object()
#: ``concierge logs supervisor``: the supervisor's own lines (unless an actor has that id)
SUPERVISOR_LOG = "supervisor"
#: ``logs -f`` clients served at once (each costs a send per forwarded line)
MAX_FOLLOWERS = 32
#: ``--wait`` requests pending at once (each is checked on every supervisor tick)
MAX_WAITERS = 32
WAITER_TTL_S = 300.0


@dataclass
class _Waiter:
    route: bytes
    req_id: int
    targets: dict[str, frozenset[State]]
    #: last state reported per actor (progress replies are sent on change only)
    seen: dict[str, str]
    #: forgotten after WAITER_TTL_S (the CLI gives up after 60 s; an actor may never settle)
    expires: float = 0.0


def outcome(child: Child) -> str:
    """The state an operator is told: WAITING for an actor retried on parole because something
    it needs is absent on this guest (its outcome is known: it will not start by retrying now)."""
    if child.state == State.BACKOFF and child.last_exit_class == "unavailable":
        return "WAITING"
    return str(child.state)


class ControlServer:
    """Serves the operator commands of ``concierge`` (status, start, stop, restart, logs ...)."""

    def __init__(self, supervisor: Supervisor, zctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.sup = supervisor
        layout = supervisor.layout
        self.sock = sockets.router(zctx, layout.url(layout.ctl))
        self._secure(str(layout.ctl), supervisor.config.agent.admin_group)
        self._waiters: list[_Waiter] = []
        self._followers: list[tuple[bytes, int, str]] = []
        self.handlers: dict[str, Handler] = {
            "status": self._status,
            "health": self._health,
            "start": self._start,
            "stop": self._stop,
            "restart": self._restart,
            "logs": self._logs,
            "metrics": self._metrics,
            "reload": self._reload,
            "version": lambda *_: {"version": __version__},
            "shutdown": self._shutdown,
        }

    @staticmethod
    def _secure(path: str, admin_group: str) -> None:
        mode = 0o600
        if admin_group:
            try:
                os.chown(path, 0, grp.getgrnam(admin_group).gr_gid)
                mode = 0o660
            except (KeyError, PermissionError):
                log.warning("admin group %s not usable", admin_group, extra={"event": "ctl.group"})
        os.chmod(path, mode)

    def drain(self) -> None:
        """Answer every pending operator request."""
        while True:
            try:
                route, *frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not frames:
                continue
            try:
                request = json.loads(frames[-1])
                req_id = int(request.get("id", 0))
                cmd = str(request["cmd"])
                args = request.get("args") or {}
                if not isinstance(args, dict):
                    raise TypeError("args must be an object")
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                self.send(
                    route,
                    {
                        "v": 1,
                        "id": 0,
                        "ok": False,
                        "error": {"code": ErrorCode.BAD_REQUEST, "message": f"bad request: {err}"},
                    },
                )
                continue
            handler = self.handlers.get(cmd)
            if handler is None:
                self.reply_error(route, req_id, ErrorCode.NOT_FOUND, f"unknown command {cmd!r}")
                continue
            try:
                result = handler(route, req_id, args)
            except ConciergeError as err:
                self.reply_error(route, req_id, ErrorCode.BAD_REQUEST, str(err))
                continue
            if result is not _NO_REPLY:
                self.send(route, {"v": 1, "id": req_id, "ok": True, "result": result})

    def send(self, route: bytes, message: dict[str, Any]) -> bool:
        """Send one reply; False if the client has gone (ROUTER_MANDATORY)."""
        try:
            self.sock.send_multipart([route, json.dumps(message).encode()], zmq.NOBLOCK)
        except zmq.ZMQError:
            return False
        return True

    def reply_error(self, route: bytes, req_id: int, code: ErrorCode, message: str) -> None:
        """Send an error reply."""
        self.send(route, {"v": 1, "id": req_id, "ok": False, "error": {"code": str(code), "message": message}})

    def _select(self, args: dict[str, Any]) -> list[Child]:
        names = args.get("actors") or []
        if not names or names == ["all"]:
            return list(self.sup.children.values())
        missing = [n for n in names if n not in self.sup.children]
        if missing:
            raise ConciergeError(f"no such actor: {', '.join(missing)}")
        return [self.sup.children[n] for n in names]

    def _status(self, _route: bytes, _req_id: int, args: dict[str, Any]) -> Any:
        status = self.sup.status()
        names = set(args.get("actors") or [])
        if names:
            status["actors"] = [a for a in status["actors"] if a["id"] in names]
        return status

    def _health(self, _route: bytes, _req_id: int, _args: dict[str, Any]) -> Any:
        bad = [
            {"id": a["id"], "state": a["state"], "health": a["health"], "detail": a["detail"]}
            for a in self.sup.status()["actors"]
            if (a["state"] != State.RUNNING or a["health"] not in ("ok", "degraded"))
            and not a["waiting"]
            and a["state"] != State.DORMANT  # not needed now: starts on demand or has no channel
        ]
        return {"healthy": not bad, "unhealthy": bad, "frozen": self.sup.frozen()}

    def _wait_or_reply(
        self, route: bytes, req_id: int, args: dict[str, Any], children: list[Child], targets: frozenset[State]
    ) -> Any:
        if not args.get("wait"):
            return {"actors": [c.id for c in children]}
        if len(self._waiters) >= MAX_WAITERS:
            raise ConciergeError(f"too many pending --wait requests (at most {MAX_WAITERS}); the action was sent")
        expires = time.monotonic() + WAITER_TTL_S
        self._waiters.append(_Waiter(route, req_id, {c.id: targets for c in children}, {}, expires))
        for child in children:
            self.notify_waiters(child)
        return _NO_REPLY

    def _start(self, route: bytes, req_id: int, args: dict[str, Any]) -> Any:
        children = self._select(args)
        for child in children:
            if child.pid == 0:
                child.attempt = 0
                child.set_state(State.STOPPED) if child.state != State.STOPPED else None
                self.sup.start_child(child)
        return self._wait_or_reply(route, req_id, args, children, frozenset({State.RUNNING, State.FATAL}))

    def _stop(self, route: bytes, req_id: int, args: dict[str, Any]) -> Any:
        children = self._select(args)
        for child in children:
            self.sup.stop_child(child)
        return self._wait_or_reply(route, req_id, args, children, frozenset({State.STOPPED, State.EXITED, State.FATAL}))

    def _restart(self, route: bytes, req_id: int, args: dict[str, Any]) -> Any:
        children = self._select(args)
        for child in children:
            child.attempt = 0
            if child.pid:
                child.restart_pending = True
                self.sup.stop_child(child, wanted=True)
            else:
                if child.state != State.STOPPED:
                    child.set_state(State.STOPPED)
                self.sup.start_child(child)
        return self._wait_or_reply(route, req_id, args, children, frozenset({State.RUNNING, State.FATAL}))

    def notify_waiters(self, child: Child | None = None) -> None:
        """Report state changes to ``--wait`` requests and complete those whose actors all
        reached an outcome: their target state, FATAL, or WAITING (with the reason). Called on
        each transition the supervisor makes and on every tick (``child`` None: all waiters)."""
        for waiter in list(self._waiters):
            if child is not None and child.id not in waiter.targets:
                continue
            if time.monotonic() > waiter.expires:
                self._waiters.remove(waiter)
                continue
            children = [self.sup.children.get(name) for name in waiter.targets]
            if any(c is None for c in children):  # removed by a reload meanwhile
                self._waiters.remove(waiter)
                self.reply_error(waiter.route, waiter.req_id, ErrorCode.NOT_FOUND, "actor removed while waiting")
                continue
            done = True
            for each in children:
                assert each is not None
                shown = outcome(each)
                if waiter.seen.get(each.id) != shown:
                    waiter.seen[each.id] = shown
                    progress = {"progress": {"actor": each.id, "state": shown}}
                    message = {"v": 1, "id": waiter.req_id, "ok": True, "more": True, "result": progress}
                    if not self.send(waiter.route, message):  # the client has gone
                        self._waiters.remove(waiter)
                        break
                finished = shown == "WAITING" or each.state in waiter.targets[each.id] or each.state == State.FATAL
                done = done and finished and not each.restart_pending
            else:  # no break: the client is still there
                if done:
                    self._complete(waiter, children)

    def _complete(self, waiter: _Waiter, children: list[Child | None]) -> None:
        """Send every actor's outcome (and why, for those not running) and forget the waiter."""
        self._waiters.remove(waiter)
        states = {c.id: outcome(c) for c in children if c is not None}
        reasons = {c.id: c.why() for c in children if c is not None and c.why()}
        result = {"states": states, "reasons": reasons}
        self.send(waiter.route, {"v": 1, "id": waiter.req_id, "ok": True, "result": result})

    def _logs(self, route: bytes, req_id: int, args: dict[str, Any]) -> Any:
        name = str(args.get("actor", ""))
        if name == SUPERVISOR_LOG and name not in self.sup.children:
            ring = self.sup.own_log.lines
        else:
            (child,) = self._select({"actors": [name]})
            ring, name = child.logs, child.id
        count = int(args.get("n", 200))
        lines = list(ring)[-count:] if count > 0 else []
        if not args.get("follow"):
            return {"lines": lines}
        if len(self._followers) >= MAX_FOLLOWERS:
            raise ConciergeError(f"too many 'logs -f' clients (at most {MAX_FOLLOWERS})")
        self.send(route, {"v": 1, "id": req_id, "ok": True, "more": True, "result": {"lines": lines}})
        self._followers.append((route, req_id, name))
        return _NO_REPLY

    def follow(self, source: str, line: str) -> None:
        """Forward a new log line of ``source`` (an actor id or ``supervisor``) to ``logs -f``
        clients; drop clients that have gone."""
        for entry in list(self._followers):
            route, req_id, actor = entry
            if actor == source and not self.send(
                route, {"v": 1, "id": req_id, "ok": True, "more": True, "result": {"lines": [line]}}
            ):
                self._followers.remove(entry)

    def _metrics(self, _route: bytes, _req_id: int, args: dict[str, Any]) -> Any:
        out = []
        for child in self._select(args):
            sample = procstat.sample(child.pid) if child.pid else {}
            out.append(
                {
                    "id": child.id,
                    "state": str(child.state),
                    "pid": child.pid or None,
                    "restarts": child.restarts,
                    "health": child.health,
                    "counters": child.counters,
                    **sample,
                }
            )
        own = procstat.sample(os.getpid())
        forkserver = self.sup.forkserver
        spare = procstat.sample(forkserver.pid) if forkserver is not None else {}
        total = sum(int(x.get("pss_bytes", 0)) for x in (own, spare, *out))
        return {
            "supervisor": own,
            "forkserver": spare,
            "actors": out,
            "total_pss_bytes": total,
            "uptime_s": self.sup.status()["uptime_s"],
        }

    def _reload(self, _route: bytes, _req_id: int, _args: dict[str, Any]) -> Any:
        return self.reload()

    def reload(self) -> dict[str, Any]:
        """Re-read the config and apply the difference (added, removed, changed actors)."""
        if self.sup.config_loader is None:
            raise ConciergeError("this supervisor has no config file to reload")
        return dict(self.sup.reload(self.sup.config_loader()))

    def _shutdown(self, _route: bytes, _req_id: int, _args: dict[str, Any]) -> Any:
        self.sup.begin_shutdown()
        return {"stopping": True}

    def close(self) -> None:
        """Close the operator socket."""
        self.sock.close(0)

"""GuestOpsNode (config id ``guestops``): policy check, audit record, then the operation.

Every handler follows the same path: class switch -> argument checks -> per-path/per-user rule
-> operation, inside :func:`audited`. Anything that can block (file I/O, spawning, helper
processes) runs on the worker pool (``blocking=True``); guest-exec-status and policy.get are
answered by the actor thread from memory. Must not import zmq.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec

from concierge.actors.guestops import accounts
from concierge.actors.guestops.audit import audited
from concierge.actors.guestops.execs import ExecTable, capture_mode
from concierge.actors.guestops.files import FileTable
from concierge.actors.guestops.messages import CLASSES, QGA_COMMANDS
from concierge.actors.guestops.policy import Policy
from concierge.actors.guestops.settings import GuestOpsSettings
from concierge.errors import ActorError, ConfigError, ErrorCode
from concierge.memtrim import large_blocks_mmapped, trim_soon
from concierge.runtime.node import Incoming
from concierge.runtime.service import ServiceNode, handler

log = logging.getLogger(__name__)

_TYPE_NAMES = {int: "integer", str: "string", bool: "boolean", list: "array"}
#: a guest-file-read of this many bytes or more leaves heap worth returning to the system
TRIM_AFTER_READ_BYTES = 1 << 20


def _arg(body: Any, name: str, kind: type, default: Any = ..., *, also: type | None = None) -> Any:
    """One argument of a QGA-shaped body, with qemu-ga's messages for missing or mistyped ones."""
    if not isinstance(body, dict):
        raise ActorError(ErrorCode.BAD_REQUEST, "arguments must be an object")
    if name not in body or body[name] is None:
        if default is ...:
            raise ActorError(ErrorCode.BAD_REQUEST, f"Parameter '{name}' is missing")
        return default
    value = body[name]
    ok = isinstance(value, kind) or (also is not None and isinstance(value, also))
    if kind is int and isinstance(value, bool):
        ok = False
    if kind is list and ok and not all(isinstance(item, str) for item in value):
        ok = False
    if not ok:
        raise ActorError(ErrorCode.BAD_REQUEST, f"Invalid parameter type for '{name}', expected: {_TYPE_NAMES[kind]}")
    # C strings end at NUL: qemu-ga would silently act on a shorter path, user or argument
    if (isinstance(value, str) and "\0" in value) or (isinstance(value, list) and any("\0" in item for item in value)):
        raise ActorError(ErrorCode.BAD_REQUEST, f"Parameter '{name}' contains a NUL character")
    return value


class GuestOpsNode(ServiceNode):
    """Files, exec, passwords and SSH keys for the QGA front-end."""

    def start(self) -> None:
        """Read settings, prepare the state dir, kill leftovers, then start the actor threads."""
        large_blocks_mmapped()  # replies of tens of MiB pass through: give them back when freed
        try:
            self.settings = msgspec.convert(dict(self.ctx.settings), GuestOpsSettings)
        except msgspec.ValidationError as err:
            raise ConfigError(str(err), key=f"actors.{self.ctx.actor_id}.settings") from err
        state_dir = Path(self.settings.state_dir)
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(
                f"cannot create state_dir {state_dir}: {err.strerror}",
                key=f"actors.{self.ctx.actor_id}.settings.state_dir",
            ) from err
        self.worker_threads = max(1, self.settings.workers)
        self.policy = Policy(self.settings)
        self.files = FileTable(
            state_dir, max_read=self.settings.max_read_bytes, read_budget=self.settings.read_budget_bytes
        )
        self.execs = ExecTable(
            state_dir, max_output=self.settings.max_output_bytes, max_records=self.settings.max_exec_records
        )
        killed = self.execs.kill_leftovers()
        self.ctx.count("exec.leftovers_killed", len(killed))
        super().start()
        if self.settings.restricted:
            log.info("guestops restricted: files, exec and accounts denied", extra={"event": "guestops.restricted"})
        self.ctx.set_health("ok")

    def on_start(self) -> None:
        """Follow freeze/thaw so no exec record is removed while filesystems are frozen."""
        self.ctx.subscribe("lifecycle.")

    @handler("lifecycle.frozen")
    def on_frozen(self, msg: Incoming) -> None:
        """lifecycle published a freeze (the QGA front-end refuses our commands meanwhile)."""
        del msg
        self.execs.set_frozen(True)

    @handler("lifecycle.thawed")
    def on_thawed(self, msg: Incoming) -> None:
        """Filesystems are writable again: flush the held record removals."""
        del msg
        self.execs.set_frozen(False)

    def idle_hold(self) -> str:
        """Exec children whose status the host has not collected and open file handles live in
        this process only: stopping it as idle would kill or lose them."""
        execs, files = self.execs.running(), len(self.files)
        if execs:
            return f"{execs} exec children not collected"
        return f"{files} open files" if files else ""

    def on_stop(self) -> None:
        """Kill unfinished exec children (recorded, never silently orphaned) and close files."""
        self.execs.close()
        self.files.close_all()

    def _enter(self, msg: Incoming) -> tuple[str, str]:
        self.policy.check_class(msg.type)
        return CLASSES[msg.type], QGA_COMMANDS[msg.type]

    # --- files --------------------------------------------------------------------------------
    @handler("file.open", blocking=True)
    def file_open(self, msg: Incoming) -> int:
        """guest-file-open."""
        with audited("files", QGA_COMMANDS[msg.type]) as rec:
            self._enter(msg)
            path = _arg(msg.body, "path", str)
            mode = _arg(msg.body, "mode", str, "r")
            rec.target = path
            self.policy.check_file(msg.type, path)
            handle: int = self.files.open(path, mode, lambda real: self.policy.check_opened(msg.type, real))
            rec.numbers["handle"] = handle
            return handle

    def _file_call(self, msg: Incoming) -> tuple[Any, int]:
        self._enter(msg)
        handle = _arg(msg.body, "handle", int)
        return msg.body, handle

    @handler("file.close", blocking=True)
    def file_close(self, msg: Incoming) -> dict[str, Any]:
        """guest-file-close."""
        with audited("files", QGA_COMMANDS[msg.type]) as rec:
            _, handle = self._file_call(msg)
            rec.target, rec.numbers["handle"] = self.files.path_of(handle), handle
            self.files.close(handle)
            return {}

    @handler("file.read", blocking=True)
    def file_read(self, msg: Incoming) -> dict[str, object]:
        """guest-file-read (bounded chunks, base64)."""
        with audited("files", QGA_COMMANDS[msg.type]) as rec:
            body, handle = self._file_call(msg)
            rec.target, rec.numbers["handle"] = self.files.path_of(handle), handle
            result = self.files.read(handle, _arg(body, "count", int, None))
            rec.numbers["bytes"] = int(result["count"])  # type: ignore[call-overload]
            self.ctx.count("files.read_bytes", rec.numbers["bytes"])
            if rec.numbers["bytes"] >= TRIM_AFTER_READ_BYTES:
                trim_soon(self.ctx)  # the reply's buffers would otherwise stay mapped
            return result

    @handler("file.write", blocking=True)
    def file_write(self, msg: Incoming) -> dict[str, object]:
        """guest-file-write."""
        with audited("files", QGA_COMMANDS[msg.type]) as rec:
            body, handle = self._file_call(msg)
            rec.target, rec.numbers["handle"] = self.files.path_of(handle), handle
            data = _arg(body, "buf-b64", str)
            result = self.files.write(handle, data, _arg(body, "count", int, None))
            rec.numbers["bytes"] = int(result["count"])  # type: ignore[call-overload]
            return result

    @handler("file.seek", blocking=True)
    def file_seek(self, msg: Incoming) -> dict[str, object]:
        """guest-file-seek (whence as 0/1/2 or set/cur/end)."""
        with audited("files", QGA_COMMANDS[msg.type]) as rec:
            body, handle = self._file_call(msg)
            rec.target, rec.numbers["handle"] = self.files.path_of(handle), handle
            offset = _arg(body, "offset", int)
            whence = _arg(body, "whence", int, also=str)
            return self.files.seek(handle, offset, whence)

    @handler("file.flush", blocking=True)
    def file_flush(self, msg: Incoming) -> dict[str, object]:
        """guest-file-flush."""
        with audited("files", QGA_COMMANDS[msg.type]) as rec:
            _, handle = self._file_call(msg)
            rec.target, rec.numbers["handle"] = self.files.path_of(handle), handle
            return self.files.flush(handle)

    # --- exec ---------------------------------------------------------------------------------
    @handler("exec.start", blocking=True)
    def exec_start(self, msg: Incoming) -> dict[str, int]:
        """guest-exec: argv, env and input are never logged (they may hold secrets)."""
        with audited("exec", QGA_COMMANDS[msg.type]) as rec:
            self._enter(msg)
            body = msg.body
            path = _arg(body, "path", str)
            rec.target = path
            argv = _arg(body, "arg", list, [])
            env = _arg(body, "env", list, None)
            data = _arg(body, "input-data", str, None)
            capture = capture_mode(body.get("capture-output"))
            rec.numbers["argc"] = len(argv)
            pid = self.execs.spawn(
                path,
                argv=argv,
                env=env,
                input_b64=data,
                capture=capture,
                check=lambda real: self.policy.check_executable(msg.type, real),
            )
            rec.numbers["child_pid"] = pid
            self.ctx.count("exec.spawned")
            return {"pid": pid}

    @handler("exec.status")
    def exec_status(self, msg: Incoming) -> dict[str, object]:
        """guest-exec-status (the first exited answer forgets the child)."""
        with audited("exec", QGA_COMMANDS[msg.type]) as rec:
            self._enter(msg)
            pid = _arg(msg.body, "pid", int)
            rec.numbers["child_pid"] = pid
            result = self.execs.status(pid)
            if result.get("exited"):
                for key in ("exitcode", "signal"):
                    if key in result:
                        rec.numbers[key] = int(result[key])  # type: ignore[call-overload]
            return result

    # --- accounts -----------------------------------------------------------------------------
    @handler("user.set-password", blocking=True)
    def set_password(self, msg: Incoming) -> dict[str, Any]:
        """guest-set-user-password: the password goes to chpasswd's stdin, nowhere else."""
        with audited("accounts", QGA_COMMANDS[msg.type]) as rec:
            self._enter(msg)
            username = _arg(msg.body, "username", str)
            rec.target = username
            self.policy.check_user(msg.type, username)
            password = accounts.decode_password(_arg(msg.body, "password", str))
            crypted = _arg(msg.body, "crypted", bool)
            accounts.set_password(username, password, crypted, self.settings.chpasswd)
            return {}

    def _ssh(self, msg: Incoming, op: str) -> Any:
        with audited("accounts", QGA_COMMANDS[msg.type]) as rec:
            self._enter(msg)
            username = _arg(msg.body, "username", str)
            rec.target = username
            self.policy.check_user(msg.type, username)
            keys = [] if op == "get" else _arg(msg.body, "keys", list)
            reset = _arg(msg.body, "reset", bool, False) if op == "add" else False
            rec.numbers["keys"] = len(keys)
            return accounts.ssh_keys(username, op, keys, reset, self.settings.helper_python)

    @handler("ssh.get-keys", blocking=True)
    def ssh_get(self, msg: Incoming) -> Any:
        """guest-ssh-get-authorized-keys."""
        return self._ssh(msg, "get")

    @handler("ssh.add-keys", blocking=True)
    def ssh_add(self, msg: Incoming) -> Any:
        """guest-ssh-add-authorized-keys."""
        return self._ssh(msg, "add")

    @handler("ssh.remove-keys", blocking=True)
    def ssh_remove(self, msg: Incoming) -> Any:
        """guest-ssh-remove-authorized-keys."""
        return self._ssh(msg, "remove")

    # --- introspection ------------------------------------------------------------------------
    @handler("policy.get")
    def policy_get(self, msg: Incoming) -> dict[str, list[str]]:
        """The QGA commands the policy disables as a whole (for guest-info's enabled flags)."""
        del msg
        return {"disabled": self.policy.disabled_commands()}

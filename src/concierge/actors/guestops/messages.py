"""Public API of the guestops actor: request types and body shapes.

Who sends: the QGA front-end of the transport actor (see
``concierge.transport.qga.commands.guestops``). Who answers: ``GuestOpsNode`` (config id
``guestops``). Request bodies are the QGA ``arguments`` objects unchanged (dash-separated keys,
base64 strings) and reply bodies are exactly qemu-ga's ``return`` values, so the QGA routes
render them with ``identity``. Errors: ``BAD_REQUEST``/``NOT_FOUND``/``INTERNAL`` carry qemu-ga's
exact ``desc`` text (QGA class ``GenericError``); ``FORBIDDEN`` means the policy denied the call
and carries ``"Command guest-X has been disabled"`` (QGA class ``CommandNotFound``, the shape of
a command disabled with ``qemu-ga -b``).

Must import only the standard library and msgspec.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

ACTOR_ID = "guestops"

#: request type -> the QGA command it implements (used for policy error texts and audit)
QGA_COMMANDS: dict[str, str] = {
    "file.open": "guest-file-open",
    "file.close": "guest-file-close",
    "file.read": "guest-file-read",
    "file.write": "guest-file-write",
    "file.seek": "guest-file-seek",
    "file.flush": "guest-file-flush",
    "exec.start": "guest-exec",
    "exec.status": "guest-exec-status",
    "user.set-password": "guest-set-user-password",
    "ssh.get-keys": "guest-ssh-get-authorized-keys",
    "ssh.add-keys": "guest-ssh-add-authorized-keys",
    "ssh.remove-keys": "guest-ssh-remove-authorized-keys",
}

#: policy class of each request type
CLASSES: dict[str, Literal["files", "exec", "accounts"]] = {
    **{t: "files" for t in QGA_COMMANDS if t.startswith("file.")},
    "exec.start": "exec",
    "exec.status": "exec",
    "user.set-password": "accounts",
    "ssh.get-keys": "accounts",
    "ssh.add-keys": "accounts",
    "ssh.remove-keys": "accounts",
}

#: timeouts the QGA routes use (seconds); big reads and helper processes need more than 10 s
TIMEOUTS: dict[str, float] = {
    "file.read": 60.0,
    "file.write": 60.0,
    "file.open": 15.0,
    "user.set-password": 30.0,
    "ssh.get-keys": 15.0,
    "ssh.add-keys": 15.0,
    "ssh.remove-keys": 15.0,
}


class FileOpen(TypedDict):
    """``file.open`` -> ``int`` handle (from a counter persisted in ``state_dir``, from 1000)."""

    path: str
    mode: NotRequired[str]  # fopen mode, default "r"


class FileHandle(TypedDict):
    """``file.close`` / ``file.flush`` -> ``{}``."""

    handle: int


class FileRead(TypedDict):
    """``file.read`` -> ``{"count": int, "buf-b64": str, "eof": bool}`` (count <= 48 MiB)."""

    handle: int
    count: NotRequired[int]  # default 4096


FileWrite = TypedDict("FileWrite", {"handle": int, "buf-b64": str, "count": NotRequired[int]})
"""``file.write`` -> ``{"count": int, "eof": bool}``."""


class FileSeek(TypedDict):
    """``file.seek`` -> ``{"position": int, "eof": bool}``; whence 0/1/2 or set/cur/end."""

    handle: int
    offset: int
    whence: int | str


ExecStart = TypedDict(
    "ExecStart",
    {
        "path": str,
        "arg": NotRequired[list[str]],
        "env": NotRequired[list[str]],
        "input-data": NotRequired[str],
        "capture-output": NotRequired[bool | str],  # bool or none/stdout/stderr/separated/merged
    },
)
"""``exec.start`` -> ``{"pid": int}``; the child runs asynchronously in its own process group."""


class ExecStatus(TypedDict):
    """``exec.status`` -> ``{"exited": bool, "exitcode"?, "signal"?, "out-data"?, ...}``.

    The first reply with ``exited: true`` forgets the child (the next query is an error).
    """

    pid: int


class SetPassword(TypedDict):
    """``user.set-password`` -> ``{}``; password is base64, piped to ``chpasswd`` on stdin."""

    username: str
    password: str
    crypted: bool


class SshKeys(TypedDict):
    """``ssh.get-keys`` -> ``{"keys": [str]}``; ``ssh.add-keys`` / ``ssh.remove-keys`` -> ``{}``."""

    username: str
    keys: NotRequired[list[str]]
    reset: NotRequired[bool]


class PolicyView(TypedDict):
    """``policy.get`` -> the QGA commands the policy disables (for ``guest-info`` enabled flags)."""

    disabled: list[str]

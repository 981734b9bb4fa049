"""Settings of the guestops actor (``[actors.guestops.settings]``), including its policy.

Defaults are what upstream qemu-ga allows (a drop-in); ``restricted = true`` denies all three
classes with one line. Must import only the standard library and msgspec.
"""

from __future__ import annotations

import msgspec


class FilesPolicy(msgspec.Struct, forbid_unknown_fields=True):
    """guest-file-*: ``allow`` the class; path globs (matched on normalised and real paths)."""

    allow: bool = True
    allow_paths: list[str] = msgspec.field(default_factory=list)  # empty: every path
    deny_paths: list[str] = msgspec.field(default_factory=list)  # wins over allow_paths


class ExecPolicy(msgspec.Struct, forbid_unknown_fields=True):
    """guest-exec*: ``allow`` the class; globs on the resolved executable's real path."""

    allow: bool = True
    allow_paths: list[str] = msgspec.field(default_factory=list)
    deny_paths: list[str] = msgspec.field(default_factory=list)


class AccountsPolicy(msgspec.Struct, forbid_unknown_fields=True):
    """guest-set-user-password and guest-ssh-*: ``allow`` the class; user-name globs."""

    allow: bool = True
    allow_users: list[str] = msgspec.field(default_factory=list)
    deny_users: list[str] = msgspec.field(default_factory=list)


class GuestOpsSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Everything the guestops actor reads from its config section."""

    #: handle counter and exec child records live here (created 0700 if missing)
    state_dir: str = "/var/lib/concierge/guestops"
    #: one switch that denies files, exec and accounts
    restricted: bool = False
    files: FilesPolicy = msgspec.field(default_factory=FilesPolicy)
    exec: ExecPolicy = msgspec.field(default_factory=ExecPolicy)
    accounts: AccountsPolicy = msgspec.field(default_factory=AccountsPolicy)
    #: qemu-ga's limits: 48 MiB per guest-file-read, 16 MiB captured per exec stream
    max_read_bytes: int = 48 * 1024 * 1024
    max_output_bytes: int = 16 * 1024 * 1024
    #: bytes all concurrent guest-file-reads may hold at once (bounds the actor's memory)
    read_budget_bytes: int = 64 * 1024 * 1024
    #: exited-but-never-queried exec records kept at most (oldest forgotten first)
    max_exec_records: int = 1024
    #: the password tool; ``-e`` is added for crypted passwords
    chpasswd: str = "chpasswd"
    #: python for the authorized_keys helper run as the user ("" = ours, then /usr/bin/python3)
    helper_python: str = ""
    #: worker threads for blocking operations (file I/O, helper processes)
    workers: int = 8

"""Which guestops calls are allowed: three classes (files, exec, accounts) with path/user rules.

A denial has exactly the shape of a command disabled in qemu-ga (``-b``): FORBIDDEN with
"Command guest-X has been disabled", which the QGA front-end sends as class CommandNotFound.
Path rules match both the normalised request path (``..`` removed) and the real path (symlinks
resolved); deny globs win over allow globs; an empty allow list allows every path or user.
Must not import pykka or zmq.
"""

from __future__ import annotations

import fnmatch
import os

from concierge.actors.guestops.messages import CLASSES, QGA_COMMANDS
from concierge.actors.guestops.settings import GuestOpsSettings
from concierge.errors import ActorError, ErrorCode


def denied(command: str) -> ActorError:
    """The error of a disabled qemu-ga command."""
    return ActorError(ErrorCode.FORBIDDEN, f"Command {command} has been disabled")


def _matches(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


def _allowed(values: list[str], allow: list[str], deny: list[str]) -> bool:
    if any(_matches(v, deny) for v in values):
        return False
    return not allow or all(_matches(v, allow) for v in values)


def normalise(path: str) -> str:
    """Absolute path with ``.``/``..`` folded (relative paths are relative to our cwd)."""
    return os.path.normpath(os.path.join(os.getcwd(), path))


class Policy:
    """Decisions for one settings object; immutable."""

    def __init__(self, settings: GuestOpsSettings) -> None:
        self.settings = settings

    def class_enabled(self, klass: str) -> bool:
        """The class switch (``restricted`` turns all three off)."""
        if self.settings.restricted:
            return False
        if klass == "files":
            return self.settings.files.allow
        if klass == "exec":
            return self.settings.exec.allow
        return self.settings.accounts.allow

    def disabled_commands(self) -> list[str]:
        """QGA commands whose whole class is denied (guest-info shows them enabled:false)."""
        return sorted(QGA_COMMANDS[t] for t, k in CLASSES.items() if not self.class_enabled(k))

    def check_class(self, request_type: str) -> None:
        """Deny the call when its class is off."""
        if not self.class_enabled(CLASSES[request_type]):
            raise denied(QGA_COMMANDS[request_type])

    def check_file(self, request_type: str, path: str) -> None:
        """Deny a file path before opening (normalised and resolved forms both count)."""
        rules = self.settings.files
        forms = [normalise(path), os.path.realpath(normalise(path))]
        if not _allowed(forms, rules.allow_paths, rules.deny_paths):
            raise denied(QGA_COMMANDS[request_type])

    def check_opened(self, request_type: str, real_path: str) -> None:
        """Deny the file actually opened (closes the symlink-swap race of :meth:`check_file`)."""
        rules = self.settings.files
        if not _allowed([real_path], rules.allow_paths, rules.deny_paths):
            raise denied(QGA_COMMANDS[request_type])

    def check_executable(self, request_type: str, real_path: str) -> None:
        """Deny an executable by its resolved real path."""
        rules = self.settings.exec
        if not _allowed([real_path], rules.allow_paths, rules.deny_paths):
            raise denied(QGA_COMMANDS[request_type])

    def check_user(self, request_type: str, username: str) -> None:
        """Deny an account operation on ``username``."""
        rules = self.settings.accounts
        if not _allowed([username], rules.allow_users, rules.deny_users):
            raise denied(QGA_COMMANDS[request_type])

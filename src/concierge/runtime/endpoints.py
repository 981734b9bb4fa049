"""RuntimeLayout: every path under the runtime directory, in one place.

``/run/concierge`` as root, ``$XDG_RUNTIME_DIR/concierge`` otherwise, or ``--runtime-dir``.
Standard library only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from concierge.errors import ConfigError

SUN_PATH_MAX = 107


def default_runtime_dir() -> Path:
    """The runtime directory for this user when none is given."""
    if os.geteuid() == 0:
        return Path("/run/concierge")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "concierge"
    return Path(f"/tmp/concierge-{os.geteuid()}")  # noqa: S108 - private 0700 dir, checked on use


@dataclass(frozen=True)
class RuntimeLayout:
    """Paths of the agent's sockets, lock and state under one root."""

    root: Path

    @property
    def lock(self) -> Path:
        """Single-instance lock, taken before anything is bound."""
        return self.root / "lock"

    @property
    def core(self) -> Path:
        """Root-only directory with the internal planes."""
        return self.root / "core"

    @property
    def control(self) -> Path:
        """Supervisor ROUTER, one DEALER per actor."""
        return self.core / "control.ipc"

    @property
    def events_in(self) -> Path:
        """XSUB side of the event proxy (publishers connect here)."""
        return self.core / "events.in.ipc"

    @property
    def events_out(self) -> Path:
        """XPUB side of the event proxy (subscribers connect here)."""
        return self.core / "events.out.ipc"

    @property
    def ctl(self) -> Path:
        """Operator socket (root and the admin group only)."""
        return self.root / "ctl.ipc"

    @property
    def channels(self) -> Path:
        """Unix sockets of the embedded default host channels."""
        return self.root / "channels"

    @property
    def users(self) -> Path:
        """Per-uid session gateway directories."""
        return self.root / "users"

    @property
    def state(self) -> Path:
        """Default state directory when not configured (markers, handle counters)."""
        return self.root / "state"

    def inbox(self, actor_id: str) -> Path:
        """The data-plane inbox of an actor."""
        return self.core / "actors" / f"{actor_id}.ipc"

    def lane(self, actor_id: str) -> Path:
        """The datagram socket of an actor's lane: small requests and replies, input casts."""
        return self.core / "actors" / f"{actor_id}.lane"

    @staticmethod
    def url(path: Path) -> str:
        """ZeroMQ ipc URL of a path, refusing paths longer than sun_path."""
        text = str(path)
        if len(text.encode()) > SUN_PATH_MAX:
            raise ConfigError(f"socket path too long ({len(text)} > {SUN_PATH_MAX})", key=text)
        return f"ipc://{text}"

    def ensure_dirs(self) -> None:
        """Create the directories with private modes."""
        for path, mode in (
            (self.root, 0o755),
            (self.core, 0o700),
            (self.core / "actors", 0o700),
            (self.channels, 0o700),
            (self.users, 0o755),
            (self.state, 0o700),
        ):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(mode)

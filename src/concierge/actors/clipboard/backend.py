"""The interface between the clipboard node (protocol state) and a display-server backend.

A backend runs its own thread(s) and talks to X11 or a Wayland compositor; it reports guest
events through :class:`BackendEvents` (called from the backend's thread) and receives commands
through :class:`ClipboardBackend` methods (thread-safe). Standard library only.
"""

from __future__ import annotations

from typing import Protocol


class BackendEvents(Protocol):
    """Callbacks from a backend thread; implementations hop to the bridge thread."""

    def guest_grab(self, selection: int, types: list[int]) -> None:
        """A guest application now owns ``selection`` offering these SPICE types."""

    def guest_release(self, selection: int) -> None:
        """The guest owner of ``selection`` went away (nobody owns it now)."""

    def app_request(self, selection: int, clip_type: int, token: int) -> None:
        """A guest app pastes ``clip_type`` from a client-owned selection; answer with provide."""

    def guest_data(self, token: int, clip_type: int, data: bytes | None) -> None:
        """The answer to :meth:`ClipboardBackend.fetch` (None: the owner gave nothing)."""

    def lost(self, reason: str) -> None:
        """The display server connection is gone (logout, crash): nothing works any more."""


class ClipboardBackend(Protocol):
    """Commands to a backend; every method is thread-safe and returns at once."""

    name: str
    selections: tuple[int, ...]

    def start(self, events: BackendEvents) -> None:
        """Connect and start the backend thread; re-announce current guest owners."""

    def grab(self, selection: int, types: list[int]) -> None:
        """Own ``selection`` for the client, offering ``types`` to guest apps."""

    def release(self, selection: int) -> None:
        """Give up ``selection`` if the client owns it."""

    def provide(self, token: int, clip_type: int, data: bytes | None) -> None:
        """Answer an :meth:`BackendEvents.app_request` (None refuses the paste)."""

    def fetch(self, selection: int, clip_type: int, token: int) -> None:
        """Read ``clip_type`` from the guest owner of ``selection``; answer via guest_data."""

    def stop(self) -> None:
        """Drop ownership and stop the thread."""

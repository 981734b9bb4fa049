"""CompositeNode: several small node classes served by one actor process.

Each part reads its settings from the sub-table named after its package
(``[actors.desktop.settings.effects]``).

Why: each Python process costs several MB even when forked from a shared image, and the minor
desktop helpers (display effects, file transfer, audio volume) are idle nearly always. They keep
their own classes, messages and pykka actors; only the process is shared. A type accepted by
several parts (``spice.client_disconnected``) reaches all of them; a request is answered by the
first part that accepts it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

from concierge.optional import missing_dependency
from concierge.runtime.node import Incoming, Node, NodeContext

log = logging.getLogger(__name__)


class _PartContext:
    """The process's context with ``settings`` narrowed to one part's sub-table."""

    def __init__(self, ctx: NodeContext, settings: Mapping[str, Any]) -> None:
        self._ctx = ctx
        self.settings = settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


def part_key(part: type[Node]) -> str:
    """Settings sub-table of a part: its package name (``effects`` for actors.effects.node)."""
    return part.__module__.split(".")[-2]


class CompositeNode(Node):
    """Hosts ``parts`` (Node subclasses) side by side on one bridge."""

    parts: tuple[type[Node], ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A composite preloads what its parts preload."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("preload", ())
        cls.preload = tuple(dict.fromkeys((*own, *(name for part in cls.parts for name in part.preload))))

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        self.members = [
            part(cast(NodeContext, _PartContext(ctx, dict(ctx.settings.get(part_key(part), {})))))
            for part in self.parts
        ]
        accepted: set[str] = set()
        for member in self.members:
            if member.accepts is None:
                self.accepts = None
                return
            accepted |= member.accepts
        self.accepts = frozenset(accepted)

    def start(self) -> None:
        """Start every part (their accept sets are final only after start). A part other than
        the first whose optional library is absent (no python-xlib for the clipboard) is left
        out with a warning naming the package: the others keep working instead of the whole
        group exiting and being restarted in a loop."""
        for member in list(self.members):
            try:
                member.start()
            except ImportError as err:
                unavailable = missing_dependency(err)
                if unavailable is None or member is self.members[0]:
                    raise unavailable or err from err
                log.warning(
                    "%s unavailable: %s",
                    part_key(type(member)),
                    unavailable,
                    extra={"event": "actor.part_unavailable"},
                )
                self.members.remove(member)
        if all(member.accepts is not None for member in self.members):
            self.accepts = frozenset().union(*(m.accepts for m in self.members if m.accepts is not None))

    def handle(self, msg: Incoming) -> None:
        """Deliver to every part that accepts the type (a request only to the first)."""
        for member in self.members:
            if member.accepts is None or msg.type in member.accepts:
                member.handle(msg)
                if msg.reply is not None:
                    return
        if msg.reply is not None and not any(m.accepts is None or msg.type in m.accepts for m in self.members):
            super().handle(msg)

    def stop(self) -> None:
        """Stop the parts in reverse order."""
        for member in reversed(self.members):
            member.stop()

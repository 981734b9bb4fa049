"""The ``desktop`` session actor: display effects, file transfer and audio volume in one process
(see :mod:`concierge.actors.composite` for why they share it)."""

from __future__ import annotations

from concierge.actors.audio.node import AudioNode
from concierge.actors.clipboard.node import ClipboardNode
from concierge.actors.composite import CompositeNode
from concierge.actors.display.node import DisplayNode
from concierge.actors.effects.node import EffectsNode
from concierge.actors.filexfer.node import FileXferNode
from concierge.actors.session.link import SessionLinkNode


class DesktopNode(CompositeNode):
    """Effects + file transfer + audio volume sync."""

    parts = (EffectsNode, FileXferNode, AudioNode)


class UserSessionNode(CompositeNode):
    """The compact session group: link, display, clipboard and desktop in one process.

    The design restarts a user's session group one_for_all anyway; one process instead of four
    saves about 20 MB per session (see docs/benchmarks.md).
    """

    parts = (SessionLinkNode, DisplayNode, ClipboardNode, EffectsNode, FileXferNode, AudioNode)

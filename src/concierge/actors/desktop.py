"""The ``desktop`` session actor: display effects, file transfer and audio volume in one process
(see :mod:`concierge.actors.composite` for why they share it)."""

from __future__ import annotations

from concierge.actors.audio.node import AudioNode
from concierge.actors.composite import CompositeNode
from concierge.actors.effects.node import EffectsNode
from concierge.actors.filexfer.node import FileXferNode


class DesktopNode(CompositeNode):
    """Effects + file transfer + audio volume sync."""

    parts = (EffectsNode, FileXferNode, AudioNode)

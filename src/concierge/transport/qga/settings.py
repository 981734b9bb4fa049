"""Settings of the QGA front-end (the ``[actors.transport.settings.qga]`` table).

Standard library and msgspec only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from concierge.errors import ConfigError
from concierge.transport.qga import lexer

#: the QEMU release whose guest-agent schema the front-end implements (its newest command,
#: guest-get-load, is "since 10.0"). guest-info reports it as ``version``: tools that compare
#: qemu-ga versions to decide what they may send (or show "qemu-guest-agent-<version>", as vdsm
#: does) then see the feature set they get. Concierge's own version is ``concierge --version``;
#: a host that must pin an older answer sets ``version`` (docs/migration.md).
QGA_SCHEMA_RELEASE = "10.0.0"


class QgaSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Policy and limits of the QGA front-end.

    ``allow_rpcs`` / ``block_rpcs`` have qemu-ga's semantics: with an allow-list only listed
    commands are enabled; the block-list wins; unknown names are ignored.
    """

    allow_rpcs: list[str] = msgspec.field(default_factory=list)
    block_rpcs: list[str] = msgspec.field(default_factory=list)
    #: version reported by guest-info (default: the QEMU schema release implemented)
    version: str = QGA_SCHEMA_RELEASE
    #: qemu-ga's limits: bytes of one message's tokens, tokens per message, nesting depth
    max_message_bytes: int = lexer.MAX_TOKEN_SIZE
    max_tokens: int = lexer.MAX_TOKEN_COUNT
    max_nesting: int = lexer.MAX_NESTING
    #: routed commands waiting for their capability actor, per connection (beyond: error)
    max_pending: int = 64


def load(mapping: Mapping[str, Any], key: str = "actors.transport.settings.qga") -> QgaSettings:
    """Convert a settings mapping, naming the key on errors."""
    try:
        return msgspec.convert(dict(mapping), QgaSettings)
    except msgspec.ValidationError as err:
        raise ConfigError(str(err), key=key) from err

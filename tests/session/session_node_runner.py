"""Runs one session node in its own process (FakeContext as the runtime) for kill -9 tests.

stdin: JSON lines ``{"type": ..., "body": ...}`` delivered as casts; stdout: one JSON line
per cast the node makes (``{"dst", "type", "body"}``; bytes are dropped), plus ``"ready"``.
Usage: python session_node_runner.py module:Class actor_id '<settings json>'
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
from typing import Any

from concierge.testing.context import FakeContext

_lock = threading.Lock()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not isinstance(v, bytes | bytearray)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class PipeContext(FakeContext):
    """Prints every cast as a JSON line."""

    def cast(self, dst: str, type: str, body: Any = None, **kwargs: Any) -> None:
        with _lock:
            sys.stdout.write(json.dumps({"dst": dst, "type": type, "body": _plain(body)}) + "\n")
            sys.stdout.flush()


def main() -> None:
    target, actor_id, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    module, cls = target.split(":")
    ctx = PipeContext(actor_id, settings)
    ctx.run_node(getattr(importlib.import_module(module), cls))
    with _lock:
        sys.stdout.write('"ready"\n')
        sys.stdout.flush()
    for line in sys.stdin:
        msg = json.loads(line)
        ctx.tell(msg["type"], msg.get("body"))
    ctx.close()


if __name__ == "__main__":
    main()

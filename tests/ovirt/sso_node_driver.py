"""Runs the sso actor in its own process (so pam_wrapper can be preloaded) for one login.

stdin: one JSON object {"settings": {...}, "runtime_dir": str, "wait_locked": bool,
"username": str, "password": str}; stdout: one JSON line with the reply. Venv python.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from concierge.actors.sso.node import SsoNode
from concierge.testing.polling_context import PollingFakeContext


def main() -> None:
    """Start the node, wait for the session state, send the login, print the reply."""
    job = json.loads(sys.stdin.readline())
    ctx = PollingFakeContext("sso", job["settings"], runtime_dir=Path(job["runtime_dir"]))
    try:
        ctx.run_node(SsoNode)
        end = time.monotonic() + 10
        while job.get("wait_locked") and time.monotonic() < end:
            if ctx.ask("sso.active_user").body.get("locked"):
                break
            time.sleep(0.05)
        reply = ctx.ask("sso.login", {"username": job["username"], "password": job["password"]})
        out = {
            "ok": reply.ok,
            "body": reply.body,
            "code": str(reply.code or ""),
            "message": reply.message,
        }
        sys.stdout.write(json.dumps(out) + "\n")
    finally:
        ctx.close()


if __name__ == "__main__":
    main()

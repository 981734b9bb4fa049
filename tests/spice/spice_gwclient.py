"""A gateway client running as another uid (stdlib-only spice_peer_client.py under setpriv)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spice_testkit import wait_for

from concierge.actors.session import framing
from concierge.testing.harness import AgentHarness, catalog
from concierge.testing.peers import require, require_binary

UID_A, UID_B = 60001, 60002  # throwaway uids: no passwd entries needed, nothing to clean up
CLIENT = Path(__file__).with_name("spice_peer_client.py")


class Client:
    """A stdlib client process running as ``uid`` (see spice_peer_client.py)."""

    def __init__(self, rundir: Path, uid: int, endpoint_uid: int, mode: str, *frames: bytes) -> None:
        self.out = Path(tempfile.mkstemp(prefix="client-", dir=rundir)[1])
        self.out.chmod(0o666)
        sock = rundir / "users" / str(endpoint_uid) / "session.sock"
        setpriv = require_binary("setpriv", "util-linux")
        require(Path("/usr/bin/python3").exists(), "apt install python3")
        argv = [
            setpriv,
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "/usr/bin/python3",
            str(CLIENT),
        ]
        self.proc = subprocess.Popen([*argv, str(sock), mode, str(self.out), *(f.hex() for f in frames)])

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines()

    def frames(self) -> list[tuple[str, Any]]:
        data = b"".join(bytes.fromhex(line[3:]) for line in self.lines() if line.startswith("RX "))
        return [(t, b) for t, b, _ in framing.FrameReader().feed(data)]

    def wait_frame(self, type_: str) -> Any:
        return wait_for(lambda: next((b for t, b in self.frames() if t == type_), None))

    def go(self) -> None:
        """Let a ``late`` client send the rest of its frames."""
        Path(f"{self.out}.go").touch()

    def stop(self) -> None:
        Path(f"{self.out}.go").unlink(missing_ok=True)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


def hello(uid: int | None = None) -> bytes:
    body: dict[str, Any] = {"version": 1, "display": ":0"}
    if uid is not None:
        body["uid"] = uid
    return framing.encode("hello", body)


@contextlib.contextmanager
def gateway_agent(users: list[int], **settings: Any) -> Iterator[AgentHarness]:
    """A real ``concierge run`` with only the session gateway, in a directory users can traverse."""
    root = Path(tempfile.mkdtemp(prefix="cc-gw-agent-"))
    root.chmod(0o755)
    table = {"users": users, "scan_run_user": False, "logind_bus": "", **settings}
    actors = {"session": {"entry": "concierge.actors.session.gateway:SessionGatewayNode", "settings": table}}
    agent = AgentHarness(root, catalog(actors), args=("--log-format", "text"))
    try:
        agent.start()
        agent.runtime_dir.chmod(0o755)
        wait_for(lambda: all((agent.runtime_dir / "users" / str(uid) / "session.sock").exists() for uid in users))
        yield agent
    finally:
        agent.stop()
        shutil.rmtree(root, ignore_errors=True)

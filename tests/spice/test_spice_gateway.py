"""Session gateway: per-uid endpoints and the attacks (other uid, lying body, PID reuse, twins)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from spice_gwclient import UID_A, UID_B, Client, hello
from spice_testkit import wait_for

from concierge.actors.input.node import InputNode
from concierge.actors.session import framing
from concierge.actors.session.gateway import SessionGatewayNode
from concierge.testing.context import FakeContext
from concierge.testing.fdloop import PollingFakeContext

GEOMETRY = {"monitors": [{"x": 0, "y": 0, "width": 1280, "height": 800, "display_id": 0}]}


@pytest.fixture
def rundir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cc-spice-gw-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def gateway(rundir: Path) -> Iterator[PollingFakeContext]:
    settings = {"users": [UID_A, UID_B], "scan_run_user": False, "logind_bus": "", "poll_s": 0.2}
    ctx = PollingFakeContext("session", settings, runtime_dir=rundir)
    ctx.run_node(SessionGatewayNode)
    yield ctx
    ctx.close()


def test_spice_endpoint_dirs_are_private(gateway: PollingFakeContext, rundir: Path) -> None:
    for uid in (UID_A, UID_B):
        st = (rundir / "users" / str(uid)).stat()
        assert (st.st_uid, st.st_mode & 0o777) == (uid, 0o700)
        st = (rundir / "users" / str(uid) / "session.sock").stat()
        assert (st.st_uid, st.st_mode & 0o777) == (uid, 0o600)


def test_spice_other_uid_cannot_reach_endpoint(gateway: PollingFakeContext, rundir: Path) -> None:
    client = Client(rundir, UID_B, UID_A, "plain", hello())
    try:
        client.proc.wait(10)
        assert client.lines() == ["ERR 13"]  # EACCES from the 0700 directory
    finally:
        client.stop()


def test_spice_peercred_refuses_other_uid_even_through_open_permissions(
    gateway: PollingFakeContext, rundir: Path
) -> None:
    (rundir / "users" / str(UID_A)).chmod(0o755)  # an admin mistake: the kernel no longer stops B
    (rundir / "users" / str(UID_A) / "session.sock").chmod(0o666)
    client = Client(rundir, UID_B, UID_A, "plain", hello(UID_A))
    try:
        reason = client.wait_frame("reject")["reason"]
        assert f"uid {UID_B} may not use the endpoint of uid {UID_A}" in reason
        assert gateway.ask("session.status").unwrap()["agents"] == []
    finally:
        client.stop()


def test_spice_uid_in_body_is_ignored(gateway: PollingFakeContext, rundir: Path) -> None:
    client = Client(rundir, UID_B, UID_B, "hold", hello(uid=0), framing.encode("geometry", GEOMETRY))
    try:
        welcome = client.wait_frame("welcome")
        assert (welcome["uid"], welcome["session_id"]) == (UID_B, f"uid-{UID_B}")
        status = wait_for(lambda: gateway.ask("session.status").unwrap()["agents"])
        assert [(a["uid"], a["pid"]) for a in status] == [(UID_B, client.proc.pid)]
    finally:
        client.stop()


def test_spice_pid_reuse_is_refused(gateway: PollingFakeContext, rundir: Path) -> None:
    client = Client(rundir, UID_A, UID_A, "fork", hello())
    try:
        client.proc.wait(10)  # the connecting process exits and is reaped; its child holds the fd
        reason = client.wait_frame("reject")["reason"]
        assert "PID reuse" in reason
        assert gateway.ask("session.status").unwrap()["rejected"] == 1
    finally:
        client.stop()


def test_spice_second_agent_in_same_session_is_refused(gateway: PollingFakeContext, rundir: Path) -> None:
    first = Client(rundir, UID_A, UID_A, "hold", hello(), framing.encode("geometry", GEOMETRY))
    second = None
    try:
        assert first.wait_frame("welcome")["session_id"] == f"uid-{UID_A}"
        active = first.wait_frame("active")
        assert active == {"active": True, "file_xfer": True}
        wait_for(lambda: ("input", "input.geometry", GEOMETRY) in gateway.casts)
        wait_for(lambda: ("session.spice_ready", {"ready": True}) in gateway.published)
        second = Client(rundir, UID_A, UID_A, "plain", hello())
        assert "already has an agent" in second.wait_frame("reject")["reason"]
        agents = gateway.ask("session.status").unwrap()["agents"]
        assert [(a["pid"], a["active"]) for a in agents] == [(first.proc.pid, True)]
        # a restarted input actor asks the gateway for the geometry instead of waiting
        fresh = FakeContext("input", {"sink": f"file:{rundir / 'events'}"}, peers={"session": gateway})
        try:
            fresh.run_node(InputNode)
            wait_for(lambda: fresh.ask("input.status").unwrap()["monitors"] == GEOMETRY["monitors"])
            assert fresh.health[0] == "ok"
        finally:
            fresh.close()
        # routing: front-end messages reach the active agent, its replies reach the transport
        gateway.tell("spice.clipboard_request", {"selection": 0, "type": 1})
        assert first.wait_frame("spice.clipboard_request") == {"selection": 0, "type": 1}
    finally:
        first.stop()
        if second is not None:
            second.stop()
    # the active agent died: geometry withdrawn, port no longer wanted
    wait_for(lambda: gateway.casts[-1] == ("input", "input.geometry", {"monitors": []}))
    wait_for(lambda: gateway.published[-1] == ("session.spice_ready", {"ready": False}))


def test_spice_file_transfer_without_agent_is_refused(gateway: PollingFakeContext) -> None:
    gateway.tell("spice.file_xfer_start", {"id": 9, "data": "[vdagent-file-xfer]\nname=a\nsize=1\n"})
    expect = {"type": "file_xfer_status", "body": {"id": 9, "result": 6, "data": b""}}
    wait_for(lambda: ("transport", "spice.send", expect) in gateway.casts)


def test_spice_two_users_without_logind_means_nobody_active(gateway: PollingFakeContext, rundir: Path) -> None:
    paste = framing.encode("spice.send", {"type": "clipboard_request", "body": {"selection": 1, "type": 1}})
    a = Client(rundir, UID_A, UID_A, "hold", hello())
    b = Client(rundir, UID_B, UID_B, "late", hello(), paste)
    try:
        a.wait_frame("welcome")
        b.wait_frame("welcome")
        wait_for(lambda: len(gateway.ask("session.status").unwrap()["agents"]) == 2)
        assert gateway.ask("session.status").unwrap()["active_session"] == ""
        b.go()  # the paste only once both are welcomed (else b may briefly be the only agent)
        # an inactive session's paste is answered "no data" at once, never sent to the client
        assert b.wait_frame("spice.clipboard") == {"selection": 1, "type": 0}
        assert not [c for c in gateway.casts if c[1] == "spice.send"]
    finally:
        a.stop()
        b.stop()


def test_spice_frames_before_hello_and_garbage_are_refused(gateway: PollingFakeContext, rundir: Path) -> None:
    early = Client(rundir, UID_A, UID_A, "plain", framing.encode("geometry", GEOMETRY))
    junk = Client(rundir, UID_B, UID_B, "plain", b"\x00\x00\x00\x03abc")
    try:
        assert early.wait_frame("reject") == {"reason": "geometry before hello"}
        assert junk.wait_frame("reject")["reason"].startswith("bad frame")
        assert gateway.ask("session.status").unwrap()["rejected"] == 2
    finally:
        early.stop()
        junk.stop()

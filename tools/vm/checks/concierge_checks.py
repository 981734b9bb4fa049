"""Checks that only an agent serving all three ports can pass: oVirt and SPICE handshakes on
their real ports, and kill -9 of actors inside the guest while the host keeps talking.

They speak raw bytes on the host sockets (the vdsm and spice-server side of each protocol), so
they need nothing but the ports. A port the guest never opens raises :class:`CheckSkipped`.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any

from checks.context import E2EContext
from checks.qga_client import QgaClient, QgaError

OVIRT = "ovirt-guest-agent.0"
SPICE = "com.redhat.spice.0"
VDP_CLIENT_PORT = 1
VD_AGENT_ANNOUNCE_CAPABILITIES = 6
STATUS = "PYTHONPATH=/opt/concierge/src:/usr/lib/concierge/vendor python3 -m concierge --json status"
CHUNK = struct.Struct("<II")  # VDIChunkHeader: port, size
MESSAGE = struct.Struct("<IIQI")  # VDAgentMessage: protocol, type, opaque, size


class CheckSkippedError(Exception):
    """The agent under test does not serve this port (reported, not counted as a pass)."""


def _wait_open(ctx: E2EContext, port: str, timeout: float) -> None:
    try:
        ctx.vm.wait_port(port, timeout=timeout)
    except TimeoutError as err:
        raise CheckSkippedError(f"{port} never opened by the guest: {err}") from err


def _lines(sock: socket.socket, deadline: float) -> list[dict[str, Any]]:
    buf = b""
    out: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                out.append(json.loads(line))
    return out


def check_ovirt_handshake(ctx: E2EContext) -> dict[str, Any]:
    """vdsm's side: connect, send refresh(apiVersion 3), expect heartbeat and the refresh set."""
    _wait_open(ctx, OVIRT, float(ctx.options.get("port_wait_s", 30)))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(ctx.port(OVIRT)))
        sock.sendall(b'{"__name__": "refresh", "apiVersion": 3}\n')
        messages = _lines(sock, time.monotonic() + float(ctx.options.get("ovirt_wait_s", 12)))
    names = [m.get("__name__") for m in messages]
    assert "heartbeat" in names, f"no heartbeat in {names}"
    for expected in ("host-name", "network-interfaces", "applications", "active-user"):
        assert expected in names, f"refresh set lacks {expected}: {names}"
    host = next(m for m in messages if m.get("__name__") == "host-name")
    assert host.get("name", "").startswith("concierge-e2e"), host
    return {"messages": len(messages), "names": sorted(set(filter(None, names)))}


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("SPICE port closed")
        data += chunk
    return data


def _announce(request: int) -> bytes:
    body = struct.pack("<II", request, 0)
    message = MESSAGE.pack(1, VD_AGENT_ANNOUNCE_CAPABILITIES, 0, len(body)) + body
    return CHUNK.pack(VDP_CLIENT_PORT, len(message)) + message


def check_spice_handshake(ctx: E2EContext) -> dict[str, Any]:
    """spice-server's side: the agent announces capabilities; our request=1 gets request=0."""
    _wait_open(ctx, SPICE, float(ctx.options.get("port_wait_s", 30)))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(float(ctx.options.get("spice_wait_s", 10)))
        sock.connect(str(ctx.port(SPICE)))
        sock.sendall(_announce(request=1))
        start = time.monotonic()
        seen = []
        while len(seen) < 4:
            port, size = CHUNK.unpack(_read_exact(sock, CHUNK.size))
            payload = _read_exact(sock, size)
            protocol, mtype, _, msize = MESSAGE.unpack_from(payload)
            assert protocol == 1 and port == VDP_CLIENT_PORT, (protocol, port)
            if mtype == VD_AGENT_ANNOUNCE_CAPABILITIES:
                request = struct.unpack_from("<I", payload, MESSAGE.size)[0]
                seen.append(request)
                if request == 0:
                    caps = struct.unpack_from(f"<{(msize - 4) // 4}I", payload, MESSAGE.size + 4)
                    return {"reply_s": round(time.monotonic() - start, 4), "caps": [hex(c) for c in caps]}
    raise AssertionError(f"no request=0 capability reply (saw requests {seen})")


def _status(qga: QgaClient) -> dict[str, dict[str, Any]]:
    code, out, err = qga.run(["/bin/sh", "-c", STATUS])
    # Exit 4 only says some actor is not RUNNING/healthy (e.g. one without its device).
    assert code in (0, 4), f"concierge status failed ({code}): {err[-300:]} {out[-300:]}"
    return {a["id"]: a for a in json.loads(out)["actors"]}


def check_kill9_actors(ctx: E2EContext) -> dict[str, Any]:
    """kill -9 each running actor (the transport last) while the host keeps talking on the QGA
    port; every one must come back with a new pid and the host stream must resynchronise.

    One connection only: QEMU's socket chardev serves a single host client at a time, so the
    pings, the guest-exec kills and the status polls share it (reconnecting after errors).
    """
    restart_wait = float(ctx.options.get("restart_wait_s", 30))
    qga = QgaClient(ctx.qga, timeout=30)
    qga.sync()
    actors = _status(qga)
    victims = [a for a in actors if a != "transport" and actors[a].get("pid") and actors[a].get("state") == "RUNNING"]
    victims += ["transport"] if actors.get("transport", {}).get("pid") else []
    stats = {"ok": 0, "errors": 0}
    recovered: dict[str, float] = {}
    try:
        for victim in victims:
            pid = actors[victim]["pid"]
            # Killing guestops loses the record of the guest-exec that did it: QgaError.
            # Killing the transport loses the reply in flight on the port (a SIGKILLed process
            # never writes it, qemu-ga's no different): the loop below reconnects and resyncs.
            qga.timeout = 15 if victim == "transport" else 30
            try:
                qga.run(["/bin/kill", "-9", str(pid)])
            except QgaError:
                pass
            except (OSError, TimeoutError, ValueError):
                if victim != "transport":
                    raise
                qga.close()
            finally:
                qga.timeout = 30
            start = time.monotonic()
            next_status = start
            while time.monotonic() - start < restart_wait and victim not in recovered:
                try:
                    qga.execute("guest-ping", timeout=5)
                    stats["ok"] += 1
                    if time.monotonic() >= next_status:
                        next_status = time.monotonic() + 0.5
                        now = _status(qga)
                        if now[victim].get("state") == "RUNNING" and now[victim].get("pid") != pid:
                            recovered[victim] = round(time.monotonic() - start, 2)
                except QgaError:
                    stats["errors"] += 1  # e.g. guest-exec while guestops restarts
                    time.sleep(0.2)
                except (OSError, TimeoutError, ValueError):
                    stats["errors"] += 1
                    qga.close()
                    time.sleep(0.2)
                    try:
                        qga = QgaClient(ctx.qga, timeout=10)
                        qga.sync(timeout=10)
                    except (OSError, TimeoutError):
                        continue
            assert victim in recovered, f"{victim} not restarted {restart_wait:.0f} s after kill -9"
    finally:
        qga.close()
    assert stats["ok"] > 0
    return {"restarted_s": recovered, "pings_ok": stats["ok"], "ping_errors": stats["errors"]}

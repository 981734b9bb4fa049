"""Containers for oVirt's ``containers`` report: the Docker Engine API's container list.

ovirt-guest-agent asked the Docker socket (``GET /containers/json?all=true``) and sent five
fields of each container; Podman serves the same API on its own socket. The sockets are
root-owned system paths (never a path inside a directory a user can write). No socket, a
refusal, a slow or malformed answer: an empty list, never an exception, as OGA skipped it.
Bounded: one request per socket, ``MAX_BODY`` bytes at most, a timeout on every read.
"""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Docker first, then rootful Podman (its API service), as OGA looked only at Docker's
SOCKETS = ("/var/run/docker.sock", "/run/podman/podman.sock")
#: a container list is a few KiB per container: 4 MiB is thousands of them
MAX_BODY = 4 * 1024 * 1024
#: the daemons answer within milliseconds; a hung one costs the report, not the actor
TIMEOUT_S = 2.0


def list_containers(sockets: Iterable[str] = SOCKETS, timeout_s: float = TIMEOUT_S) -> list[dict[str, Any]]:
    """Containers of the first API socket that answers, in OGA's shape."""
    for path in sockets:
        try:
            if not stat.S_ISSOCK(Path(path).lstat().st_mode):
                continue
            answer = _get(path, "/containers/json?all=true", timeout_s)
        except (OSError, ValueError, RecursionError):  # a deeply nested answer too
            continue
        if isinstance(answer, list):
            return [_shape(item) for item in answer if isinstance(item, dict)]
    return []


def _shape(item: dict[str, Any]) -> dict[str, Any]:
    names = item.get("Names")
    return {
        "id": str(item.get("Id", "")),
        "names": [str(name) for name in names] if isinstance(names, list) else [],
        "image": str(item.get("Image", "")),
        "command": str(item.get("Command", "")),
        "status": str(item.get("Status", "")),
    }


def _get(path: str, target: str, timeout_s: float) -> Any:
    """One HTTP/1.0 GET over the unix socket (the daemon closes after answering)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(path)
        sock.sendall(f"GET {target} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        data = bytearray()
        while len(data) <= MAX_BODY:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        else:
            raise ValueError("container list over the size bound")
    head, sep, body = bytes(data).partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/") or head.split(b" ", 2)[1:2] != [b"200"]:
        raise ValueError("no 200 answer")
    if b"transfer-encoding: chunked" in head.lower():
        raise ValueError("chunked answer to an HTTP/1.0 request")
    return json.loads(body)

"""oVirt's ``containers`` report: the Docker Engine API's container list, bounded and never
raising. The daemon is stood in for by a unix-socket HTTP server answering exactly what
Docker's ``GET /containers/json?all=true`` answers (no Docker daemon on the test machine)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from concierge.actors.monitor.containers import MAX_BODY, list_containers

DOCKER_ANSWER = [
    {
        "Id": "3f4e8a1b9c2d",
        "Names": ["/web"],
        "Image": "nginx:1.19",
        "Command": "nginx -g 'daemon off;'",
        "Status": "Up 2 hours",
        "State": "running",
    }
]


def _serve(path: Path, answer: bytes) -> Iterator[None]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    requests: list[bytes] = []

    def loop() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                requests.append(conn.recv(4096))
                conn.sendall(answer)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield
    server.close()
    assert all(r.startswith(b"GET /containers/json?all=true HTTP/1.0\r\n") for r in requests)


@pytest.fixture
def docker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "docker.sock"
    body = json.dumps(DOCKER_ANSWER).encode()
    head = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    yield from (path for _ in _serve(path, head + body))


def test_docker_containers_in_ovirt_guest_agents_shape(docker: Path) -> None:
    assert list_containers([str(docker)]) == [
        {
            "id": "3f4e8a1b9c2d",
            "names": ["/web"],
            "image": "nginx:1.19",
            "command": "nginx -g 'daemon off;'",
            "status": "Up 2 hours",
        }
    ]


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.0 500 Internal Server Error\r\n\r\n{}",
        b"HTTP/1.0 200 OK\r\n\r\nnot json",
        b"HTTP/1.0 200 OK\r\n\r\n" + b"[" * 100_000,
        b"garbage without a header",
        b"HTTP/1.0 200 OK\r\n\r\n" + b" " * (MAX_BODY + 10),
        b"HTTP/1.0 200 OK\r\n\r\n" + json.dumps({"not": "a list"}).encode(),
    ],
)
def test_a_broken_daemon_answer_is_no_containers(tmp_path: Path, answer: bytes) -> None:
    path = tmp_path / "docker.sock"
    for _ in _serve(path, answer):
        assert list_containers([str(path)]) == []


def test_no_socket_or_not_a_socket_is_no_containers(tmp_path: Path) -> None:
    plain = tmp_path / "docker.sock"
    plain.write_text("not a socket")
    assert list_containers([str(tmp_path / "absent.sock"), str(plain)]) == []

"""Prometheus rendering of the status snapshot, checked with the reference parser."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from concierge.supervisor.metrics_format import (
    StatusFormatError,
    to_prometheus,
    write_textfile,
)

STATUS = {
    "uptime_s": 12.5,
    "actors": [
        {
            "id": "transport",
            "state": "RUNNING",
            "pid": 4242,
            "restarts": 2,
            "health": "ok",
            "rss_bytes": 31457280,
            "counters": {"msgs_in": 10, "msgs_out": 9},
            "latency": {"guest-ping": {"count": 9, "sum_s": 0.0045, "p50_s": 0.0004, "p99_s": 0.001}},
        },
        {
            "id": 'we"ird\\actor\n',
            "state": "BACKOFF",
            "pid": None,
            "restarts": 5,
            "health": {"ok": False, "detail": "no display"},
            "rss_bytes": None,
            "counters": {},
        },
    ],
}


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Strict parse of the text exposition format (every line must be a comment or a sample).

    With prometheus-client installed the reference parser must agree (see the test below).
    """
    out = {}
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        labels = match.group(2) or ""
        pairs = _LABEL.findall(labels)
        assert "".join(f'{k}="{v}",' for k, v in pairs).rstrip(",") == labels.rstrip(","), line
        key = (match.group(1), tuple(sorted((k, _unescape(v)) for k, v in pairs)))
        out[key] = float(match.group(3))
    return out


def test_ship_metrics_reference_parser_agrees() -> None:
    from prometheus_client import parser  # a dev requirement: never skipped
    text = to_prometheus(STATUS)
    reference = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            reference[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert reference == samples(text)


def test_ship_metrics_render_parses_with_reference_parser() -> None:
    text = to_prometheus(STATUS)
    got = samples(text)
    assert got[("concierge_up", ())] == 1
    assert got[("concierge_uptime_seconds", ())] == 12.5
    assert got[("concierge_actors", ())] == 2
    t = (("actor", "transport"),)
    assert got[("concierge_actor_restarts_total", t)] == 2
    assert got[("concierge_actor_rss_bytes", t)] == 31457280
    assert got[("concierge_actor_pid", t)] == 4242
    assert got[("concierge_actor_up", t)] == 1
    assert got[("concierge_actor_healthy", t)] == 1
    assert got[("concierge_actor_state", (("actor", "transport"), ("state", "RUNNING")))] == 1
    assert got[("concierge_actor_state", (("actor", "transport"), ("state", "FATAL")))] == 0
    msgs_in = (("actor", "transport"), ("counter", "msgs_in"))
    assert got[("concierge_actor_messages_total", msgs_in)] == 10
    lat = (("actor", "transport"), ("quantile", "0.99"), ("type", "guest-ping"))
    assert got[("concierge_actor_request_latency_seconds", lat)] == 0.001
    ping = (("actor", "transport"), ("type", "guest-ping"))
    assert got[("concierge_actor_request_latency_seconds_count", ping)] == 9


def test_ship_metrics_escapes_labels_and_skips_absent_values() -> None:
    got = samples(to_prometheus(STATUS))
    weird = (("actor", 'we"ird\\actor\n'),)
    assert got[("concierge_actor_up", weird)] == 0
    assert got[("concierge_actor_healthy", weird)] == 0
    assert got[("concierge_actor_restarts_total", weird)] == 5
    assert ("concierge_actor_pid", weird) not in got
    assert ("concierge_actor_rss_bytes", weird) not in got


def test_ship_metrics_each_family_declared_once() -> None:
    text = to_prometheus(STATUS)
    types = [line for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types))
    assert "# TYPE concierge_actor_restarts_total counter" in types


def test_ship_metrics_process_samples_from_the_metrics_reply() -> None:
    reply = {
        "supervisor": {"rss_bytes": 20_000_000, "pss_bytes": 9_000_000, "cpu_s": 1.5},
        "forkserver": {},
        "total_pss_bytes": 50_000_000,
        "uptime_s": 3.0,
        "actors": [
            {
                "id": "monitor",
                "state": "RUNNING",
                "pid": 7,
                "restarts": 0,
                "health": "degraded",
                "counters": {"msgs_in": 1},
                "rss_bytes": 1,
                "pss_bytes": 2,
                "cpu_s": 0.25,
                "threads": 4,
                "fds": 9,
            }
        ],
    }
    got = samples(to_prometheus(reply))
    m = (("actor", "monitor"),)
    assert got[("concierge_actor_pss_bytes", m)] == 2
    assert got[("concierge_actor_cpu_seconds_total", m)] == 0.25
    assert got[("concierge_actor_threads", m)] == 4
    assert got[("concierge_actor_open_fds", m)] == 9
    assert got[("concierge_actor_healthy", m)] == 0
    assert got[("concierge_process_pss_bytes", (("process", "supervisor"),))] == 9_000_000
    assert got[("concierge_pss_bytes", ())] == 50_000_000


def test_ship_metrics_empty_and_minimal_status() -> None:
    got = samples(to_prometheus({}))
    assert got[("concierge_actors", ())] == 0
    got = samples(to_prometheus({"actors": [{"id": "x"}]}))
    assert got[("concierge_actor_state", (("actor", "x"), ("state", "STOPPED")))] == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ({"actors": "nope"}, r"^status\['actors'\] must be a list$"),
        ({"actors": [{"state": "RUNNING"}]}, r"^status\['actors'\]\[0\] needs a string 'id'$"),
        ({"actors": [{"id": "a", "restarts": "many"}]}, r"^actor 'a': restarts must be a number, got 'many'$"),
        ({"actors": [{"id": "a", "counters": [1, 2]}]}, r"^actor 'a': counters must be a mapping$"),
        ({"actors": [{"id": "a", "latency": {"t": 3}}]}, r"^actor 'a': latency\['t'\] must be a mapping$"),
    ],
)
def test_ship_metrics_bad_shape_is_a_clear_error(status: dict, error: str) -> None:
    with pytest.raises(StatusFormatError, match=error):
        to_prometheus(status)


def test_ship_metrics_textfile_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "concierge.prom"
    big = to_prometheus(STATUS) * 200
    small = to_prometheus({})
    seen: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            if target.exists():
                seen.append(target.read_text())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(50):
            write_textfile(target, big if i % 2 else small)
    finally:
        stop.set()
        thread.join()
    assert all(text in (big, small) for text in seen)
    assert oct(os.stat(target).st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["concierge.prom"]


def test_ship_metrics_textfile_failure_leaves_old_file(tmp_path: Path) -> None:
    target = tmp_path / "concierge.prom"
    write_textfile(target, "old\n")
    with pytest.raises(TypeError, match="must be str, not None"):
        write_textfile(target, None)  # type: ignore[arg-type]
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["concierge.prom"]

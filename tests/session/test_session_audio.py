"""Audio actor against a real PulseAudio (null sink, private socket) through real pactl."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from session_helpers import wait_until

from concierge.actors.audio.node import AudioNode, to_pulse
from concierge.testing.context import FakeContext
from concierge.testing.peers import require_binary


@pytest.fixture()
def pulse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    daemon = require_binary("pulseaudio", "pulseaudio")
    require_binary("pactl", "pulseaudio-utils")
    sock = tmp_path / "native"
    env = dict(
        os.environ,
        HOME=str(tmp_path),
        XDG_RUNTIME_DIR=str(tmp_path),
        PULSE_RUNTIME_PATH=str(tmp_path / "rt"),
    )
    proc = subprocess.Popen(
        [
            daemon,
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--disable-shm=yes",
            "--use-pid-file=no",
            "-L",
            "module-null-sink sink_name=cc channels=2",
            "-L",
            f"module-native-protocol-unix auth-anonymous=1 socket={sock}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(sock.exists, what="pulseaudio socket")
    monkeypatch.setenv("PULSE_SERVER", f"unix:{sock}")
    yield f"unix:{sock}"
    proc.terminate()
    proc.wait(timeout=10)


def pactl(*args: str) -> str:
    return subprocess.run(["pactl", *args], capture_output=True, text=True, check=True).stdout


def raw_volumes(kind: str) -> list[int]:
    target = "@DEFAULT_SINK@" if kind == "sink" else "@DEFAULT_SOURCE@"
    return [int(v) for v in re.findall(r":\s+(\d+) /", pactl(f"get-{kind}-volume", target))]


def test_playback_volume_per_channel_and_mute(pulse: str, session_ctx: Any) -> None:
    ctx: FakeContext = session_ctx("audio")
    ctx.run_node(AudioNode)
    reply = ctx.ask(
        "spice.audio_volume_sync",
        {"is_playback": 1, "mute": 1, "nchannels": 2, "volume": [65535, 32768]},
    )
    assert reply.ok and reply.body["applied"]
    assert raw_volumes("sink") == [65536, to_pulse(32768)]
    assert "yes" in pactl("get-sink-mute", "@DEFAULT_SINK@")


def test_record_volume_mono_on_a_stereo_source(pulse: str, session_ctx: Any) -> None:
    ctx: FakeContext = session_ctx("audio")
    ctx.run_node(AudioNode)
    reply = ctx.ask("spice.audio_volume_sync", {"is_playback": 0, "mute": 0, "nchannels": 1, "volume": [16384]})
    assert reply.ok and reply.body["applied"]
    assert raw_volumes("source") == [to_pulse(16384)] * 2
    assert "no" in pactl("get-source-mute", "@DEFAULT_SOURCE@")


def test_lying_nchannels_is_refused(pulse: str, session_ctx: Any) -> None:
    ctx: FakeContext = session_ctx("audio")
    ctx.run_node(AudioNode)
    before = raw_volumes("sink")
    reply = ctx.ask("spice.audio_volume_sync", {"is_playback": 1, "mute": 0, "nchannels": 200, "volume": [1, 2]})
    assert not reply.ok and reply.code == "BAD_REQUEST"
    assert raw_volumes("sink") == before


def test_no_sound_server_tools_is_unsupported(session_ctx: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    ctx: FakeContext = session_ctx("audio")
    ctx.run_node(AudioNode)
    reply = ctx.ask("spice.audio_volume_sync", {"is_playback": 1, "mute": 0, "nchannels": 1, "volume": [1]})
    assert reply.ok and not reply.body["applied"] and ctx.health[0] == "degraded"

"""vCPU / memory-block logic against a fake sysfs tree, time get/set with a stand-in hwclock,
and the QGA route table of the lifecycle actor."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lifecycle_support import make_script

from concierge.actors.lifecycle import messages as m
from concierge.actors.lifecycle.clockset import UNSUPPORTED, ClockError, TimeSetter
from concierge.actors.lifecycle.node import LifecycleNode
from concierge.errors import ErrorCode
from concierge.testing.context import FakeContext
from concierge.transport.qga.commands import all_routes


def _fake_sysfs(root: Path) -> Path:
    cpu = root / "devices" / "system" / "cpu"
    (cpu / "cpu0").mkdir(parents=True)  # no online file: not offlinable
    for n, state in ((1, "1\n"), (2, "0\n"), (10, "1\n")):
        (cpu / f"cpu{n}").mkdir()
        (cpu / f"cpu{n}" / "online").write_text(state)
    (cpu / "cpufreq").mkdir()
    (cpu / "online").write_text("0-1,10\n")
    mem = root / "devices" / "system" / "memory"
    mem.mkdir(parents=True)
    (mem / "block_size_bytes").write_text("8000000\n")
    for n, state, removable in ((0, "online", "0"), (3, "online", "1"), (7, "offline", "1")):
        (mem / f"memory{n}").mkdir()
        (mem / f"memory{n}" / "state").write_text(state + "\n")
        (mem / f"memory{n}" / "removable").write_text(removable + "\n")
    return root


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[FakeContext]:
    root = _fake_sysfs(tmp_path / "sys")
    hwclock = make_script(tmp_path / "hwclock", f'echo "$@" >> {tmp_path}/hwclock.log\n')
    context = FakeContext(
        "lifecycle",
        {
            "sysfs_root": str(root),
            "hwclock": str(hwclock),
            "fsfreeze_hook": "",
            "state_dir": str(tmp_path / "state"),
            "only_mountpoints": ["/nonexistent-test-mount"],
        },
    )
    context.run_node(LifecycleNode)
    yield context
    context.close()


def _online(tmp_path: Path, cpu: int) -> str:
    return (tmp_path / "sys/devices/system/cpu" / f"cpu{cpu}" / "online").read_text().strip()


def test_get_vcpus(ctx: FakeContext, tmp_path: Path) -> None:
    listed = ctx.ask(m.GET_VCPUS).unwrap()
    readdir = [int(n[3:]) for n in os.listdir(tmp_path / "sys/devices/system/cpu") if n[3:].isdigit()]
    assert [c["logical-id"] for c in listed] == readdir  # qemu-ga's order: the directory's
    assert sorted(listed, key=lambda c: c["logical-id"]) == [
        {"logical-id": 0, "online": True, "can-offline": False},
        {"logical-id": 1, "online": True, "can-offline": True},
        {"logical-id": 2, "online": False, "can-offline": True},
        {"logical-id": 10, "online": True, "can-offline": True},
    ]


def test_set_vcpus_prefix_semantics(ctx: FakeContext, tmp_path: Path) -> None:
    body = {
        "vcpus": [
            {"logical-id": 2, "online": True},
            {"logical-id": 1, "online": False},
            {"logical-id": 0, "online": False},
            {"logical-id": 10, "online": False},
        ]
    }
    assert ctx.ask(m.SET_VCPUS, body).unwrap() == 2  # stops at cpu0, which cannot go offline
    assert (_online(tmp_path, 2), _online(tmp_path, 1), _online(tmp_path, 10)) == ("1", "0", "1")
    first_fails = ctx.ask(m.SET_VCPUS, {"vcpus": [{"logical-id": 0, "online": False}]})
    assert not first_fails.ok
    assert first_fails.message == "logical processor #0 can't be offlined"
    missing = ctx.ask(m.SET_VCPUS, {"vcpus": [{"logical-id": 99, "online": True}]})
    assert not missing.ok and missing.message.endswith('cpu99/"): No such file or directory')
    assert ctx.ask(m.SET_VCPUS, {"vcpus": []}).unwrap() == 0
    bad = ctx.ask(m.SET_VCPUS, {"vcpus": [{"logical-id": "x", "online": True}]})
    assert not bad.ok and bad.code == ErrorCode.BAD_REQUEST


def test_set_cpus_count_for_ovirt(ctx: FakeContext, tmp_path: Path) -> None:
    assert ctx.ask(m.SET_CPUS, {"count": 3}).unwrap() == {"online": 3}
    assert (_online(tmp_path, 1), _online(tmp_path, 2), _online(tmp_path, 10)) == ("1", "1", "0")
    assert ctx.ask(m.SET_CPUS, {"count": 1}).unwrap() == {"online": 1}
    assert not ctx.ask(m.SET_CPUS, {"count": 0}).ok


def test_memory_blocks(ctx: FakeContext, tmp_path: Path) -> None:
    listed = ctx.ask(m.GET_MEMORY_BLOCKS).unwrap()
    readdir = [int(n[6:]) for n in os.listdir(tmp_path / "sys/devices/system/memory") if n[6:].isdigit()]
    assert [b["phys-index"] for b in listed] == readdir  # qemu-ga's order: the directory's
    assert sorted(listed, key=lambda b: b["phys-index"]) == [
        {"phys-index": 0, "online": True, "can-offline": False},
        {"phys-index": 3, "online": True, "can-offline": True},
        {"phys-index": 7, "online": False, "can-offline": True},
    ]
    assert ctx.ask(m.GET_MEMORY_BLOCK_INFO).unwrap() == {"size": 0x8000000}
    reply = ctx.ask(
        m.SET_MEMORY_BLOCKS,
        {
            "mem-blks": [
                {"phys-index": 7, "online": True},
                {"phys-index": 3, "online": True},
                {"phys-index": 42, "online": True},
            ]
        },
    ).unwrap()
    assert reply == [
        {"phys-index": 7, "response": "success"},
        {"phys-index": 3, "response": "success"},
        {"phys-index": 42, "response": "not-found", "error-code": 2},
    ]
    state = tmp_path / "sys/devices/system/memory/memory7/state"
    assert state.read_text().startswith("online")  # sysfs takes the pwrite as the value


def test_time_get_and_rtc_load(ctx: FakeContext, tmp_path: Path) -> None:
    now = time.time_ns()
    got = ctx.ask(m.GET_TIME).unwrap()
    assert abs(got - now) < 5 * 10**9 and got % 1000 == 0
    assert ctx.ask(m.SET_TIME, {}).ok
    assert (tmp_path / "hwclock.log").read_text().split() == ["-s"]
    bad = ctx.ask(m.SET_TIME, {"time": 4102444800 * 10**9 + 1})  # year 2100
    assert not bad.ok and bad.message == "Invalid time"
    assert ctx.ask(m.SET_TIME, {"time": 2**63 - 1}).message == "Invalid time"


def test_time_setter_sets_clock_then_rtc(tmp_path: Path) -> None:
    calls: list[int] = []
    hwclock = make_script(tmp_path / "hwclock", f'echo "$@" >> {tmp_path}/rtc.log\n')
    setter = TimeSetter(str(hwclock), settime=calls.append)
    setter.set_time(1_795_653_426_906_158_123)
    assert calls == [1_795_653_426_906_158_000]
    assert (tmp_path / "rtc.log").read_text().split() == ["-w"]
    failing = TimeSetter(str(make_script(tmp_path / "bad", "exit 1\n")), settime=calls.append)
    with pytest.raises(ClockError, match="hwclock failed to set hardware clock to system time"):
        failing.set_time(None)
    with pytest.raises(ClockError, match=UNSUPPORTED):
        TimeSetter(str(tmp_path / "missing")).set_time(None)


def test_qga_routes() -> None:
    routes = all_routes()
    expected = {
        "guest-shutdown",
        "guest-suspend-disk",
        "guest-suspend-ram",
        "guest-suspend-hybrid",
        "guest-fsfreeze-status",
        "guest-fsfreeze-freeze",
        "guest-fsfreeze-freeze-list",
        "guest-fsfreeze-thaw",
        "guest-fstrim",
        "guest-get-time",
        "guest-set-time",
        "guest-get-vcpus",
        "guest-set-vcpus",
        "guest-get-memory-blocks",
        "guest-set-memory-blocks",
        "guest-get-memory-block-info",
    }
    assert expected <= set(routes)
    mine = {name: r for name, r in routes.items() if r.actor == "lifecycle"}
    assert set(mine) == expected
    assert {n for n, r in mine.items() if not r.success_response} == {
        "guest-shutdown",
        "guest-suspend-disk",
        "guest-suspend-ram",
        "guest-suspend-hybrid",
    }
    assert {n for n, r in mine.items() if r.allowed_while_frozen} == {"guest-fsfreeze-status", "guest-fsfreeze-thaw"}

    def body(name: str, args: dict[str, Any]) -> Any:
        return mine[name].to_request(args)

    assert body("guest-shutdown", {}) == {"mode": "powerdown", "delay_s": 0, "message": "hypervisor initiated shutdown"}
    assert body("guest-suspend-hybrid", {}) == {"mode": "hybrid"}
    assert body("guest-fsfreeze-freeze", {}) == {"mountpoints": None}
    assert body("guest-fsfreeze-freeze-list", {"mountpoints": ["/a"]}) == {"mountpoints": ["/a"]}
    assert body("guest-set-memory-blocks", {"mem-blks": []}) == {"mem-blks": []}
    assert mine["guest-fsfreeze-freeze"].request == m.FREEZE


def test_clock_watch_detects_resume_and_rtc_jumps_but_not_drift() -> None:
    from concierge.actors.lifecycle.clockwatch import ClockWatch, Sample, detect

    base = Sample(realtime=1000.0, sleep_offset=5.0, rtc=1000.0)
    drift = Sample(realtime=1010.3, sleep_offset=5.0, rtc=1010.0)
    assert detect(base, drift, 2.0) is None
    assert detect(base, Sample(1070.0, 65.0, 1070.0), 2.0) == ("resume", 60.0)
    paused = detect(base, Sample(realtime=1010.0, sleep_offset=5.0, rtc=1130.0), 2.0)
    assert paused == ("rtc", 120.0)
    assert detect(base, Sample(1010.0, 5.0, None), 2.0) is None

    samples = iter([base, Sample(1010.0, 5.0, 1130.0), Sample(1130.0, 5.0, 1130.0), Sample(1135.0, 5.0, 1135.0)])
    resyncs: list[str] = []
    steps: list[tuple[str, float, str]] = []
    watch = ClockWatch(
        interval_s=60,
        threshold_s=2.0,
        resync_from_rtc=lambda: resyncs.append("rtc"),
        on_step=lambda *a: steps.append(a),
        sample=lambda: next(samples),
        ntp_step=lambda: False,
    )
    watch._last = watch.sample()
    assert watch.check() == ("rtc", 120.0, "hwclock")
    assert resyncs == ["rtc"] and steps == [("rtc", 120.0, "hwclock")]
    assert watch.check() is None  # re-baselined after the resync


def test_node_clock_watch_resyncs_from_rtc_after_a_jump(tmp_path: Path) -> None:
    from lifecycle_support import wait_for

    rtc = tmp_path / "sys" / "class" / "rtc" / "rtc0"
    rtc.mkdir(parents=True)
    epoch = rtc / "since_epoch"
    epoch.write_text(f"{int(time.time())}\n")
    hwclock = make_script(tmp_path / "hwclock", f'echo "$@" >> {tmp_path}/hwclock.log\n')
    context = FakeContext(
        "lifecycle",
        {
            "sysfs_root": str(tmp_path / "sys"),
            "hwclock": str(hwclock),
            "fsfreeze_hook": "",
            "state_dir": str(tmp_path / "state"),
            "only_mountpoints": ["/nonexistent-test-mount"],
            "clock_watch_s": 0.05,
            "clock_resync": "rtc",
        },
    )
    context.run_node(LifecycleNode)
    try:
        time.sleep(0.3)
        epoch.write_text(f"{int(time.time()) + 600}\n")  # the host moved on while we were paused
        assert wait_for(lambda: any(t == m.EVT_CLOCK_STEPPED for t, _ in context.published), 10)
        body = next(b for t, b in context.published if t == m.EVT_CLOCK_STEPPED)
        assert body["cause"] == "rtc" and body["action"] == "hwclock"
        assert 590 < body["seconds"] < 610
        assert (tmp_path / "hwclock.log").read_text().split()[0] == "-s"
    finally:
        context.close()

"""The peer checks themselves: in CI a missing peer fails, only allow-listed skips skip."""

from __future__ import annotations

import pytest

from concierge.testing import peers
from concierge.testing.reference import reference_file


def test_missing_peer_fails_under_require_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCIERGE_REQUIRE_PEERS", "1")
    with pytest.raises(pytest.fail.Exception, match=r"^required peer missing: frobnicator not found"):
        peers.require(False, "frobnicator not found (apt install frob)")
    with pytest.raises(pytest.fail.Exception, match=r"^required peer missing: needs root: to test"):
        peers.require(False, "needs root: to test")


def test_missing_peer_skips_on_a_laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONCIERGE_REQUIRE_PEERS", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^frobnicator not found"):
        peers.require(False, "frobnicator not found")
    monkeypatch.setenv("CONCIERGE_REQUIRE_PEERS", "0")
    with pytest.raises(pytest.skip.Exception, match=r"^frobnicator not found"):
        peers.require(False, "frobnicator not found")


def test_only_allow_listed_skips_survive_require_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCIERGE_REQUIRE_PEERS", "1")
    with pytest.raises(pytest.skip.Exception, match=r"\[allow-listed: the kernel has no AF_VSOCK"):
        peers.skip_allowed("vsock", False, "AF_VSOCK unavailable")
    with pytest.raises(KeyError, match="'bluetooth' is not an allowed skip"):
        peers.skip_allowed("bluetooth", False, "no bluetooth")
    peers.skip_allowed("vsock", True, "available: nothing happens")


def test_tools_are_found_by_full_sbin_path_without_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert peers.require_binary("losetup", "util-linux") in ("/usr/sbin/losetup", "/sbin/losetup")
    assert peers.find_tool("no-such-tool-cc") is None


def test_a_failing_tool_fails_the_test_with_its_stderr() -> None:
    losetup = peers.require_binary("losetup", "util-linux")
    with pytest.raises(pytest.fail.Exception, match=r"^attaching a loop device failed \(.*losetup -d /dev/nonexistent"):
        peers.run_tool([losetup, "-d", "/dev/nonexistent-cc"], "attaching a loop device")


def test_shared_reference_data_is_required_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCIERGE_REQUIRE_PEERS", "1")
    with pytest.raises(pytest.fail.Exception, match=r"shared reference data not found: no-such-schema\.json"):
        reference_file("no-such-schema.json")

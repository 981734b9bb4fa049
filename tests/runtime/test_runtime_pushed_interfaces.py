"""guest-network-get-interfaces answered inline by the transport from the monitor's pushed
layout (issue 16), with live counters, following an address that comes and goes (rtnetlink). Runs
the whole agent in a private network namespace, as root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from concierge.testing.peers import require

_SCRIPT = Path(__file__).with_name("pushed_netns_script.py")


def test_interface_layout_is_pushed_and_follows_link_changes(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    require(unshare is not None and os.geteuid() == 0, "needs root and unshare (util-linux)")
    require(shutil.which("ip") is not None, "ip not found (apt install iproute2)")
    assert unshare is not None
    done = subprocess.run(
        [unshare, "-n", sys.executable, str(_SCRIPT), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["before"] == ["lo"]
    assert result["added"] == ["10.77.0.1"], result
    assert result["removed"] == [], result
    assert {"rx-bytes", "tx-packets"} <= set(result["statistics"]), result  # counters read live
    assert result["pushed"] >= 19, result  # all but the first answers came from the transport

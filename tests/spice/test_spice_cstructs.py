"""Python layouts match spice/vd_agent.h: compile a C probe, compare sizes, offsets, enums."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from concierge.testing.peers import require, require_binary
from concierge.transport.spice import codec, wire
from concierge.transport.spice.wire import Cap, MsgType

HEADER = Path("/usr/include/spice-1/spice/vd_agent.h")

# C struct -> (Python struct format used by the codec, field names in order)
LAYOUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "VDIChunkHeader": (wire.CHUNK_HEADER.format, ("port", "size")),
    "VDAgentMessage": (wire.MESSAGE_HEADER.format, ("protocol", "type", "opaque", "size")),
    "VDAgentMouseState": (wire.MOUSE_STATE_STRUCT.format, ("x", "y", "buttons", "display_id")),
    "VDAgentMonConfig": (codec._MON.format, ("height", "width", "depth", "x", "y")),
    "VDAgentMonitorsConfig": (codec._TWO_U32.format, ("num_of_monitors", "flags")),
    "VDAgentMonitorMM": (codec._MM.format, ("height", "width")),
    "VDAgentReply": (codec._TWO_U32.format, ("type", "error")),
    "VDAgentClipboard": (codec._U32.format, ("type",)),
    "VDAgentDisplayConfig": (codec._TWO_U32.format, ("flags", "depth")),
    "VDAgentAnnounceCapabilities": (codec._U32.format, ("request",)),
    "VDAgentClipboardRequest": (codec._U32.format, ("type",)),
    "VDAgentFileXferStartMessage": (codec._U32.format, ("id",)),
    "VDAgentFileXferStatusMessage": (codec._TWO_U32.format, ("id", "result")),
    "VDAgentFileXferStatusError": ("<BI", ("error_type", "error_code")),
    "VDAgentFileXferStatusNotEnoughSpace": ("<Q", ("disk_free_space",)),
    "VDAgentFileXferDataMessage": (codec._XFER_DATA.format, ("id", "size")),
    "VDAgentMaxClipboard": (codec._I32.format, ("max",)),
    "VDAgentAudioVolumeSync": (codec._VOLUME.format, ("is_playback", "mute", "nchannels")),
    "VDAgentDeviceDisplayInfo": (
        codec._DEV_INFO.format,
        ("channel_id", "monitor_id", "device_display_id", "device_address_len"),
    ),
    "VDAgentGraphicsDeviceInfo": (codec._U32.format, ("count",)),
}


def _c_source() -> str:
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        "#include <spice/vd_agent.h>",
        "int main(void) {",
    ]
    for name, (_, fields) in LAYOUTS.items():
        lines.append(f'printf("size {name} %zu\\n", sizeof({name}));')
        for f in fields:
            lines.append(f'printf("off {name}.{f} %zu\\n", offsetof({name}, {f}));')
    for t in MsgType:
        lines.append(f'printf("enum VD_AGENT_{t.name} %d\\n", (int)VD_AGENT_{t.name});')
    for c in Cap:
        lines.append(f'printf("enum VD_AGENT_CAP_{c.name} %d\\n", (int)VD_AGENT_CAP_{c.name});')
    for macro in (
        "VD_AGENT_PROTOCOL",
        "VD_AGENT_MAX_DATA_SIZE",
        "VDP_CLIENT_PORT",
        "VDP_SERVER_PORT",
    ):
        lines.append(f'printf("enum {macro} %d\\n", (int){macro});')
    lines.append("return 0; }")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def c_facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    gcc = require_binary("gcc", "gcc")
    require(HEADER.exists(), "vd_agent.h missing (apt install libspice-protocol-dev)")
    tmp = tmp_path_factory.mktemp("cstructs")
    (tmp / "probe.c").write_text(_c_source())
    subprocess.run([gcc, "-I/usr/include/spice-1", "-o", str(tmp / "probe"), str(tmp / "probe.c")], check=True)
    out = subprocess.run([str(tmp / "probe")], check=True, capture_output=True, text=True).stdout
    return {f"{kind} {key}": int(val) for kind, key, val in (line.split() for line in out.splitlines())}


@pytest.mark.peer
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_spice_struct_matches_header(c_facts: dict[str, int], name: str) -> None:
    fmt, fields = LAYOUTS[name]
    assert struct.calcsize(fmt) == c_facts[f"size {name}"]
    codes = fmt.lstrip("<=")
    for i, field in enumerate(fields):
        assert struct.calcsize("<" + codes[:i]) == c_facts[f"off {name}.{field}"], field


@pytest.mark.peer
def test_spice_enums_match_header(c_facts: dict[str, int]) -> None:
    for t in MsgType:
        assert c_facts[f"enum VD_AGENT_{t.name}"] == t.value
    for c in Cap:
        assert c_facts[f"enum VD_AGENT_CAP_{c.name}"] == c.value
    assert c_facts["enum VD_AGENT_PROTOCOL"] == wire.PROTOCOL
    assert c_facts["enum VD_AGENT_MAX_DATA_SIZE"] == wire.MAX_DATA_SIZE
    assert c_facts["enum VDP_CLIENT_PORT"] == wire.CLIENT_PORT
    assert c_facts["enum VDP_SERVER_PORT"] == wire.SERVER_PORT

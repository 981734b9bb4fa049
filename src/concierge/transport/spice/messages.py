"""Typed bodies of the vdagent messages, one per ``VD_AGENT_*`` type (the front-end's public API).

Field names are the ``vd_agent.h`` struct fields in snake_case. Large data (clipboard contents,
file-transfer data) never sits in a body: it travels as ``blobs[0]`` of the message.

Routing (all sent by the transport actor's :class:`SpiceFrontEnd`, on its bridge thread):

* ``MouseState`` -> input actor, cast ``input.mouse`` on the ``input`` lane, ttl 50 ms.
* every session-bound message -> session gateway (``session``), cast ``spice.<snake_name>``:
  ``spice.monitors_config``, ``spice.clipboard`` (+blob), ``spice.display_config``,
  ``spice.clipboard_grab``, ``spice.clipboard_request``, ``spice.clipboard_release``,
  ``spice.file_xfer_start``, ``spice.file_xfer_status``, ``spice.file_xfer_data`` (+blob),
  ``spice.client_disconnected``, ``spice.max_clipboard``, ``spice.audio_volume_sync``,
  ``spice.graphics_device_info``, and ``spice.announce_capabilities`` (the client's caps, so the
  session side knows the clipboard layout and serial rules; ``request=1`` means a new client).
* guest -> host: anyone (normally the gateway) casts ``spice.send`` ``SendBody`` to the
  transport actor; ``body`` is the typed body below, ``blobs[0]`` the data where noted.
* event ``session.spice_ready`` ``AgentState`` (gateway, forwarded by the transport node to
  ``SpiceFrontEnd.event``): whether an active session agent
  with a known geometry exists (the port policy, see ``frontend.py``).

Must import only the standard library.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class MouseState(TypedDict):
    """VDAgentMouseState (server, port 2). ``buttons`` uses VD_AGENT_*BUTTON_MASK bits."""

    x: int
    y: int
    buttons: int
    display_id: int


class MonConfig(TypedDict):
    """VDAgentMonConfig: one monitor (height before width on the wire)."""

    height: int
    width: int
    depth: int
    x: int
    y: int


class MonitorMM(TypedDict):
    """VDAgentMonitorMM: physical size in millimetres."""

    height: int
    width: int


class MonitorsConfig(TypedDict):
    """VDAgentMonitorsConfig; ``physical_sizes`` only when flags has PHYSICAL_SIZE (1 << 1)."""

    num_of_monitors: int
    flags: int
    monitors: list[MonConfig]
    physical_sizes: NotRequired[list[MonitorMM]]


class Reply(TypedDict):
    """VDAgentReply: ``type`` is the acknowledged message type, ``error`` 1=SUCCESS 2=ERROR."""

    type: int
    error: int


class Clipboard(TypedDict):
    """VDAgentClipboard; the data is ``blobs[0]``. ``selection`` is 0 without SELECTION cap."""

    selection: int
    type: int


class DisplayConfig(TypedDict):
    """VDAgentDisplayConfig."""

    flags: int
    depth: int


class AnnounceCapabilities(TypedDict):
    """VDAgentAnnounceCapabilities; ``caps`` are the u32 words."""

    request: int
    caps: list[int]


class ClipboardGrab(TypedDict):
    """VDAgentClipboardGrab; ``serial`` is 0 and meaningless without GRAB_SERIAL."""

    selection: int
    serial: int
    types: list[int]


class ClipboardRequest(TypedDict):
    """VDAgentClipboardRequest."""

    selection: int
    type: int


class ClipboardRelease(TypedDict):
    """VDAgentClipboardRelease."""

    selection: int


class FileXferStart(TypedDict):
    """VDAgentFileXferStartMessage; ``data`` is the GKeyFile text without its NUL."""

    id: int
    data: str


class FileXferStatus(TypedDict):
    """VDAgentFileXferStatusMessage; ``data`` is the optional detail (bytes)."""

    id: int
    result: int
    data: bytes


class FileXferData(TypedDict):
    """VDAgentFileXferDataMessage; the ``size`` data bytes are ``blobs[0]``."""

    id: int
    size: int


class ClientDisconnected(TypedDict):
    """VD_AGENT_CLIENT_DISCONNECTED (server, port 2): empty."""


class MaxClipboard(TypedDict):
    """VDAgentMaxClipboard (-1 = unlimited)."""

    max: int


class AudioVolumeSync(TypedDict):
    """VDAgentAudioVolumeSync; ``len(volume) == nchannels``."""

    is_playback: int
    mute: int
    nchannels: int
    volume: list[int]


class DeviceDisplayInfo(TypedDict):
    """VDAgentDeviceDisplayInfo; ``device_address`` without its NUL."""

    channel_id: int
    monitor_id: int
    device_display_id: int
    device_address_len: int
    device_address: str


class GraphicsDeviceInfo(TypedDict):
    """VDAgentGraphicsDeviceInfo."""

    count: int
    display_info: list[DeviceDisplayInfo]


class SendBody(TypedDict):
    """Body of the ``spice.send`` cast: ``type`` is a snake name, e.g. ``clipboard_grab``."""

    type: str
    body: dict[str, Any]


class AgentState(TypedDict):
    """Body of ``session.spice_ready``: an active session agent reported its geometry."""

    ready: bool


#: VD_AGENT_FILE_XFER_STATUS_* results
XFER_CAN_SEND_DATA = 0
XFER_CANCELLED = 1
XFER_ERROR = 2
XFER_SUCCESS = 3
XFER_NOT_ENOUGH_SPACE = 4
XFER_SESSION_LOCKED = 5
XFER_VDAGENT_NOT_CONNECTED = 6
XFER_DISABLED = 7

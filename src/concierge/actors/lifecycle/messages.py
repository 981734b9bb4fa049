"""Public API of the lifecycle actor (config id ``lifecycle``): request, event and note shapes.

Senders: the QGA front-end (routes in ``transport/qga/commands/lifecycle.py``), the oVirt
front-end (``lifecycle.shutdown`` / ``lifecycle.suspend`` / ``lifecycle.set_cpus``), operators.
Bodies are plain msgpack maps; keys of vCPU / memory-block items keep qemu-ga's spelling
(``logical-id``, ``phys-index``, ``can-offline``) so the QGA rendering is the identity.
Errors carry qemu-ga's exact ``desc`` text as their message. Must import only stdlib/msgspec.

Requests (all answered by ``lifecycle``; suggested requester timeouts in brackets):

``lifecycle.shutdown`` :class:`ShutdownRequest` -> ``None`` [30 s]
    Power off / halt / reboot, after ``delay_s`` seconds, with ``message`` as wall text.
    QGA: success is not answered on the wire (``success_response=False``).
``lifecycle.suspend`` :class:`SuspendRequest` -> ``None`` [30 s]
    Suspend to ram / disk / hybrid. Checks support first and fails honestly
    (``"the requested suspend mode is not supported by the guest"``).
``lifecycle.freeze`` :class:`FreezeRequest` -> ``int`` (filesystems frozen) [600 s]
    Hooks ``freeze``, then FIFREEZE in reverse mount order. Starts the freeze lease.
``lifecycle.thaw`` ``{}`` -> ``int`` (filesystems thawed) [120 s]
    Cancels a freeze still in progress (kills a slow hook), thaws, hooks ``thaw``.
``lifecycle.freeze_status`` ``{}`` -> ``"frozen" | "thawed"`` [5 s]; answers at once.
``lifecycle.fstrim`` :class:`FstrimRequest` -> ``{"paths": [TrimResult]}`` [600 s]
``lifecycle.get_time`` -> ``int`` ns since the epoch [5 s]
``lifecycle.set_time`` :class:`SetTimeRequest` -> ``None`` [30 s]
``lifecycle.get_vcpus`` -> ``[VcpuInfo]`` [5 s]
``lifecycle.set_vcpus`` :class:`SetVcpusRequest` -> ``int`` processed prefix [10 s]
``lifecycle.set_cpus`` :class:`SetCpusRequest` -> ``{"online": int}`` (oVirt) [10 s]
``lifecycle.get_memory_blocks`` -> ``[MemoryBlockInfo]`` [10 s]
``lifecycle.set_memory_blocks`` :class:`SetMemoryBlocksRequest` -> ``[MemoryBlockResponse]``
``lifecycle.get_memory_block_info`` -> ``{"size": int}`` [5 s]

Events consumed: ``host.connected`` / ``host.disconnected`` ``{"channel", "protocol"}`` (a
``qga`` disconnect thaws a freeze after ``disconnect_grace_s``).
Events published: ``lifecycle.frozen`` :class:`FrozenEvent`, ``lifecycle.thawed``
:class:`ThawedEvent`, ``lifecycle.clock_stepped`` :class:`ClockSteppedEvent` (only with
``clock_watch_s`` > 0). Supervisor note: ``freeze.state`` ``{"frozen": bool, "deadline_s": float}``
(sent *before* the first FIFREEZE, so the supervisor stops writing and restarting first).
"""

from __future__ import annotations

from typing import Literal, TypedDict

import msgspec

SHUTDOWN = "lifecycle.shutdown"
SUSPEND = "lifecycle.suspend"
FREEZE = "lifecycle.freeze"
THAW = "lifecycle.thaw"
FREEZE_STATUS = "lifecycle.freeze_status"
FSTRIM = "lifecycle.fstrim"
GET_TIME = "lifecycle.get_time"
SET_TIME = "lifecycle.set_time"
GET_VCPUS = "lifecycle.get_vcpus"
SET_VCPUS = "lifecycle.set_vcpus"
SET_CPUS = "lifecycle.set_cpus"
GET_MEMORY_BLOCKS = "lifecycle.get_memory_blocks"
SET_MEMORY_BLOCKS = "lifecycle.set_memory_blocks"
GET_MEMORY_BLOCK_INFO = "lifecycle.get_memory_block_info"

EVT_FROZEN = "lifecycle.frozen"
EVT_THAWED = "lifecycle.thawed"
EVT_CLOCK_STEPPED = "lifecycle.clock_stepped"
NOTE_FREEZE_STATE = "freeze.state"

ShutdownMode = Literal["powerdown", "halt", "reboot"]
SuspendMode = Literal["ram", "disk", "hybrid"]
ThawReason = Literal["request", "lease", "disconnect", "restart", "stop", "freezefail"]


class ShutdownRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``lifecycle.shutdown``: QGA sends only ``mode``; oVirt adds delay and message."""

    mode: str = "powerdown"
    delay_s: int = 0
    message: str = "hypervisor initiated shutdown"


class SuspendRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``lifecycle.suspend``."""

    mode: SuspendMode


class FreezeRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``lifecycle.freeze``: ``mountpoints`` None = every freezable fs (guest-fsfreeze-freeze).

    ``channel`` names the host channel of the requester when the front-end knows it; a
    disconnect of that channel (or, without it, of any ``qga`` channel) ends the freeze.
    """

    mountpoints: list[str] | None = None
    channel: str | None = None


class FstrimRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``lifecycle.fstrim``: ``minimum`` extent length in bytes (FITRIM minlen)."""

    minimum: int | None = None


class SetTimeRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``lifecycle.set_time``: ns since the epoch, or None to load the time from the RTC."""

    time: int | None = None


class VcpuItem(msgspec.Struct, forbid_unknown_fields=True, rename="kebab"):
    """One element of ``guest-set-vcpus`` (``can-offline`` is accepted and ignored)."""

    logical_id: int
    online: bool
    can_offline: bool | None = None


class SetVcpusRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``lifecycle.set_vcpus``."""

    vcpus: list[VcpuItem]


class SetCpusRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``lifecycle.set_cpus`` (oVirt): keep ``count`` CPUs online, lowest ids first."""

    count: int


class MemoryBlockItem(msgspec.Struct, forbid_unknown_fields=True, rename="kebab"):
    """One element of ``guest-set-memory-blocks``."""

    phys_index: int
    online: bool
    can_offline: bool | None = None


class SetMemoryBlocksRequest(msgspec.Struct, forbid_unknown_fields=True, rename="kebab"):
    """``lifecycle.set_memory_blocks``: body ``{"mem-blks": [...]}`` as in QGA."""

    mem_blks: list[MemoryBlockItem]


#: Reply element of ``lifecycle.get_vcpus`` (qemu-ga spelling).
VcpuInfo = TypedDict("VcpuInfo", {"logical-id": int, "online": bool, "can-offline": bool})

#: Reply element of ``lifecycle.get_memory_blocks``.
MemoryBlockInfo = TypedDict("MemoryBlockInfo", {"phys-index": int, "online": bool, "can-offline": bool})

#: Reply element of ``lifecycle.set_memory_blocks``: ``response`` is success | not-found |
#: operation-not-supported | operation-failed; ``error-code`` an errno when it failed.
MemoryBlockResponse = TypedDict(
    "MemoryBlockResponse",
    {"phys-index": int, "response": str, "error-code": int},
    total=False,
)


class TrimResult(TypedDict, total=False):
    """One path of the ``lifecycle.fstrim`` reply: ``path`` and either trimmed+minimum or error."""

    path: str
    trimmed: int
    minimum: int
    error: str


class FrozenEvent(TypedDict):
    """Body of ``lifecycle.frozen``."""

    count: int
    mountpoints: list[str]
    deadline_s: float


class ThawedEvent(TypedDict):
    """Body of ``lifecycle.thawed``; ``reason`` says who ended the freeze."""

    count: int
    reason: str


class ClockSteppedEvent(TypedDict):
    """Body of ``lifecycle.clock_stepped``: cause resume | rtc, the jump, the resync used."""

    cause: str
    seconds: float
    action: str

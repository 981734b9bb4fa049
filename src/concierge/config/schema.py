"""Typed configuration (strict: unknown keys are errors naming the file and key).

Imports msgspec only, never zmq or pykka: the CLI validates configs without starting anything.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Restart = Literal["permanent", "transient", "temporary"]


class AgentSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Agent-wide settings."""

    log_format: Literal["json", "text"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    heartbeat_interval_s: float = 0.5
    heartbeat_timeout_s: float = 3.0
    actor_unresponsive_s: float = 3.0
    #: after sending a request on the lane, poll without sleeping this long for the reply
    #: (0: never; never on a single CPU). Costs at most this much CPU per request; saves the
    #: requester's wake-up, about a third of an actor-to-actor round trip on a small VM
    lane_spin_us: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 50
    admin_group: str = ""
    state_dir: str = ""
    input_sink: str = ""
    #: per-actor memory watermarks (runtime/watermark.py), anonymous RSS in MiB, 0 = off: above
    #: the soft one an actor refuses bulk requests with BACKPRESSURE until it is back under it;
    #: above the hard one while idle (no message for memory_idle_s) it exits 75 and is restarted
    memory_soft_mb: Annotated[int, msgspec.Meta(ge=0, le=1 << 20)] = 256
    memory_hard_mb: Annotated[int, msgspec.Meta(ge=0, le=1 << 20)] = 512
    memory_idle_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0
    #: request/cast types an actor over its soft watermark sheds (glob patterns)
    memory_bulk_types: list[str] = msgspec.field(
        default_factory=lambda: ["file.read", "file.write", "exec.start", "spice.clipboard", "spice.file_xfer_data"]
    )


class SupervisorSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Restart policy defaults (OTP intensity/period, supervisord-style backoff)."""

    intensity: int = 5
    period_s: float = 60.0
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 30.0
    stable_after_s: float = 10.0
    parole_s: float = 300.0
    start_timeout_s: float = 30.0
    shutdown_timeout_s: float = 3.0


class ActorSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One child spec of the root supervisor."""

    entry: str
    enabled: bool = True
    essential: bool = False
    restart: Restart = "permanent"
    start_timeout_s: float | None = None
    shutdown_timeout_s: float | None = None
    intensity: int | None = None
    period_s: float | None = None
    user: str | None = None
    group: str | None = None
    #: this actor's watermarks (MiB) instead of agent.memory_soft_mb / agent.memory_hard_mb
    memory_soft_mb: Annotated[int, msgspec.Meta(ge=0, le=1 << 20)] | None = None
    memory_hard_mb: Annotated[int, msgspec.Meta(ge=0, le=1 << 20)] | None = None
    settings: dict[str, Any] = msgspec.field(default_factory=dict)


class ChannelSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A host channel: which protocol, over which transport, at which path."""

    protocol: Literal["qga", "ovirt", "spice"]
    method: Literal["virtio-serial", "isa-serial", "unix-listen", "unix-connect", "vsock-listen"]
    path: str


class AgentConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The whole resolved configuration."""

    agent: AgentSection = msgspec.field(default_factory=AgentSection)
    supervisor: SupervisorSection = msgspec.field(default_factory=SupervisorSection)
    actors: dict[str, ActorSection] = msgspec.field(default_factory=dict)
    channels: dict[str, ChannelSection] = msgspec.field(default_factory=dict)


def memory_limits(agent: AgentSection, actor: ActorSection) -> dict[str, Any]:
    """The ``memory`` entry of an actor's welcome: its watermarks, the actor's own if set."""
    return {
        "soft_mb": agent.memory_soft_mb if actor.memory_soft_mb is None else actor.memory_soft_mb,
        "hard_mb": agent.memory_hard_mb if actor.memory_hard_mb is None else actor.memory_hard_mb,
        "idle_s": agent.memory_idle_s,
        "bulk_types": list(agent.memory_bulk_types),
    }

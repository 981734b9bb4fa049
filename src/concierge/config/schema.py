"""Typed configuration (strict: unknown keys are errors naming the file and key).

Imports msgspec only, never zmq or pykka: the CLI validates configs without starting anything.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Restart = Literal["permanent", "transient", "temporary"]
#: when an actor runs: ``always`` from the agent's start; ``on-demand`` on the first request
#: another actor sends it (socket-activation style), stopped again after ``idle_stop_s``
Activation = Literal["always", "on-demand"]
#: a condition the guest must meet for an actor to be started at all: ``channel:<protocol>``
#: (a host channel of that protocol is configured) or ``path:<absolute path>`` (it exists)
Requirement = Annotated[str, msgspec.Meta(pattern=r"^(channel:(qga|ovirt|spice)|path:/\S*)$")]


class AgentSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Agent-wide settings."""

    #: auto: text on a terminal, JSON otherwise (the journal keeps one object per line)
    log_format: Literal["auto", "json", "text"] = "auto"
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
    #: whose modules the fork server imports before forking: "started" the actors started with
    #: the agent (an on-demand actor imports its own when woken: smaller idle agent, ~25 ms
    #: slower wake-up, ~1.5 MB more per awake on-demand actor), "all" every actor the guest can
    #: run (for guests whose on-demand actors are awake most of the time)
    preload: Literal["started", "all"] = "started"


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
    activation: Activation = "always"
    #: an on-demand actor that received nothing for this long is stopped (DORMANT) until the
    #: next request; 0 keeps it running once started. Never while filesystems are frozen, nor
    #: while the actor holds work in progress (guestops: an exec child, an open file)
    idle_stop_s: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    #: every condition must hold, else the actor is not started (DORMANT, with the reason)
    requires: list[Requirement] = msgspec.field(default_factory=list)
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

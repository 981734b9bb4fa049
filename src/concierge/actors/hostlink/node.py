"""HostLinkNode: the transport actor. Owns every host channel and its protocol front-ends.

Everything runs on the bridge thread: channels are fds watched with ``ctx.watch_fd`` and timers
from ``ctx.call_later``; front-ends answer protocol requests themselves and route the rest to
capability actors with ``ctx.request``. Front-end classes are imported lazily, only for the
protocols configured; a front-end that cannot be loaded disables its channels (health degraded)
without taking the others down. Must not import zmq or capability actors.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import msgspec

from concierge.actors.hostlink import messages
from concierge.actors.hostlink.settings import DEFAULT_FRONTENDS, HostLinkSettings
from concierge.errors import ConfigError, ErrorCode
from concierge.memtrim import large_blocks_mmapped
from concierge.runtime.node import Health, Incoming, Node, NodeContext
from concierge.transport.host.api import FrontEnd, HostLink
from concierge.transport.host.channel import Channel, ChannelSpec, make_channel
from concierge.transport.host.spec import default_channels

log = logging.getLogger(__name__)


def load_class(entry: str, key: str) -> type[Any]:
    """Import ``module:Class``; errors name the settings key."""
    module_name, sep, attr = entry.partition(":")
    if not sep:
        raise ConfigError(f"expected module:Class, got {entry!r}", key=key)
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"cannot load {entry}: {err}", key=key) from err
    if not isinstance(cls, type):
        raise ConfigError(f"{entry} is not a class", key=key)
    return cls


class HostLinkNode(Node):
    """The ``transport`` actor: host channels in, capability requests out."""

    #: events forwarded to front-ends that have an ``event(topic, body)`` method
    forwarded_prefixes = ("lifecycle.", "session.")
    accepts = None
    preload = (
        *(entry.partition(":")[0] for entry in DEFAULT_FRONTENDS.values()),
        "concierge.transport.host.port",
        "concierge.transport.host.listen",
        "concierge.transport.host.connect",
    )

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx)
        self.settings = HostLinkSettings()
        self.channels: list[Channel] = []
        self.failed: dict[str, str] = {}

    def start(self) -> None:
        """Parse settings, build channels, subscribe to freeze events."""
        large_blocks_mmapped()  # replies of tens of MiB pass through: give them back when freed
        try:
            self.settings = msgspec.convert(dict(self.ctx.settings), HostLinkSettings)
        except msgspec.ValidationError as err:
            raise ConfigError(str(err), key=f"actors.{self.ctx.actor_id}.settings") from err
        specs = [ChannelSpec(c.name, c.protocol, c.method, c.path) for c in self.settings.channels] or [
            ChannelSpec(**c) for c in default_channels(self.ctx.runtime_dir)
        ]
        classes: dict[str, type[Any]] = {}
        for spec in specs:
            if spec.protocol not in classes and spec.protocol not in self.failed:
                entry = self.settings.frontends.get(spec.protocol)
                key = f"actors.{self.ctx.actor_id}.settings.frontends.{spec.protocol}"
                try:
                    if entry is None:
                        raise ConfigError(f"no front-end for protocol {spec.protocol}", key=key)
                    classes[spec.protocol] = load_class(entry, key)
                except ConfigError as err:
                    log.error("%s", err, extra={"event": "transport.frontend_missing"})
                    self.failed[spec.protocol] = str(err)
                    continue
            cls = classes.get(spec.protocol)
            if cls is None:
                continue
            self.channels.append(self._build(spec, cls))
        for prefix in self.forwarded_prefixes:
            self.ctx.subscribe(prefix)
        for channel in self.channels:
            channel.start()
        self._report()

    def _build(self, spec: ChannelSpec, cls: type[Any]) -> Channel:
        proto_settings = dict(self.settings.protocol_settings.get(spec.protocol, {}))
        ctx = self.ctx

        def make_frontend(link: HostLink) -> FrontEnd:
            frontend: FrontEnd = cls(ctx, link, proto_settings)
            return frontend

        options: dict[str, Any] = {
            "backoff_min_s": self.settings.backoff_min_s,
            "backoff_max_s": self.settings.backoff_max_s,
            "max_buffer": self.settings.max_output_bytes,
            "high_watermark": self.settings.output_high_watermark,
        }
        if spec.method in ("virtio-serial", "isa-serial"):
            options["recheck_s"] = self.settings.recheck_s
        elif spec.method != "unix-connect":
            options["max_clients"] = self.settings.max_clients
        return make_channel(self.ctx, spec, make_frontend, self._on_state, **options)

    def _on_state(self, channel: Channel, attached: bool) -> None:
        body = {"channel": channel.spec.name, "protocol": channel.spec.protocol}
        if attached:
            self.ctx.publish(messages.HOST_CONNECTED, body)
            self.ctx.count(f"host.{channel.spec.name}.connects")
        else:
            self.ctx.publish(messages.HOST_DISCONNECTED, body)
            self.ctx.count(f"host.{channel.spec.name}.disconnects")
        self._report()

    def _report(self) -> None:
        parts = [f"{c.spec.name}={'attached' if c.attached else 'waiting'}" for c in self.channels] + [
            f"{proto}=failed" for proto in self.failed
        ]
        status: Health = "degraded" if self.failed or not self.channels else "ok"
        self.ctx.set_health(status, " ".join(parts))

    def status(self) -> dict[str, Any]:
        """The ``transport.status`` reply body."""
        channels = []
        for channel in self.channels:
            state = channel.status()
            channels.append(
                messages.ChannelStatus(
                    name=channel.spec.name,
                    protocol=channel.spec.protocol,
                    method=channel.spec.method,
                    path=channel.spec.path,
                    attached=channel.attached,
                    open=bool(state.get("open", False)),
                    clients=int(state.get("clients", 1 if channel.attached else 0)),
                    error=str(state.get("error", "")),
                )
            )
        result: dict[str, Any] = msgspec.to_builtins(messages.StatusReply(channels=channels))
        return result

    def handle(self, msg: Incoming) -> None:
        """Freeze and session events go to every front-end; ``transport.status`` is answered."""
        if msg.kind == "evt" and msg.type.startswith(self.forwarded_prefixes):
            for channel in self.channels:
                for frontend in channel.frontends():
                    event = getattr(frontend, "event", None)
                    if event is not None:
                        event(msg.type, msg.body)
            return
        if msg.type.startswith("spice.mouse_"):
            # the input actor lends its sink to one SPICE front-end: the first (see tablet.py)
            for frontend in self._spice_frontends()[:1]:
                frontend.deliver(msg)
            return
        if msg.type == "spice.send":
            # a user actor's guest->client message, relayed by the session gateway
            for channel in self.channels:
                if channel.spec.protocol == "spice":
                    for frontend in channel.frontends():
                        deliver = getattr(frontend, "deliver", None)
                        if deliver is not None:
                            deliver(msg)
            return
        if msg.type == messages.STATUS and msg.reply is not None:
            msg.reply.ok(self.status())
            return
        if msg.reply is not None:
            msg.reply.error(ErrorCode.UNKNOWN_TYPE, f"{self.ctx.actor_id} does not handle {msg.type}")

    def _spice_frontends(self) -> list[Any]:
        return [
            frontend
            for channel in self.channels
            if channel.spec.protocol == "spice"
            for frontend in channel.frontends()
            if getattr(frontend, "deliver", None) is not None
        ]

    def stop(self) -> None:
        """Close every channel."""
        for channel in self.channels:
            channel.stop()
        self.channels = []

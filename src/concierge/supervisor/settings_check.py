"""``concierge config check``: every actor's ``settings`` table against the struct it is read
into, so that a typo fails the check instead of turning the actor FATAL (exit 78) at start.

The table maps each actor entry to its settings struct (and each QGA/oVirt front-end to its
own). An entry missing here is reported as not checked; a test keeps the built-in catalog
covered.
"""

from __future__ import annotations

import pkgutil
from typing import Any

import msgspec

from concierge.config.loader import validation_error
from concierge.config.schema import AgentConfig
from concierge.errors import ConfigError

#: actor entry -> "module:Struct" its node converts ``settings`` into
SETTINGS_STRUCTS: dict[str, str] = {
    "concierge.actors.hostlink.node:HostLinkNode": "concierge.actors.hostlink.settings:HostLinkSettings",
    "concierge.actors.lifecycle.node:LifecycleNode": "concierge.actors.lifecycle.settings:LifecycleSettings",
    "concierge.actors.monitor.node:MonitorNode": "concierge.actors.monitor.settings:MonitorSettings",
    "concierge.actors.guestops.node:GuestOpsNode": "concierge.actors.guestops.settings:GuestOpsSettings",
    "concierge.actors.sso.node:SsoNode": "concierge.actors.sso.settings:SsoSettings",
    "concierge.actors.input.node:InputNode": "concierge.actors.input.settings:InputSettings",
    "concierge.actors.session.gateway:SessionGatewayNode": "concierge.actors.session.settings:GatewaySettings",
    "concierge.actors.display.node:DisplayNode": "concierge.actors.display.settings:DisplaySettings",
    "concierge.actors.clipboard.node:ClipboardNode": "concierge.actors.clipboard.settings:ClipboardSettings",
}
#: transport ``protocol_settings.<protocol>`` -> the front-end's struct
PROTOCOL_STRUCTS: dict[str, str] = {
    "qga": "concierge.transport.qga.settings:QgaSettings",
    "ovirt": "concierge.transport.ovirt.settings:OvirtSettings",
}


def check_settings(config: AgentConfig, source: str) -> tuple[list[str], list[str]]:
    """Validate each enabled actor's settings; returns (checked ids, ids without a known
    struct). Raises ConfigError naming the dotted key, with the known keys or allowed values."""
    checked, unknown = [], []
    for actor_id, spec in config.actors.items():
        if not spec.enabled:
            continue
        target = SETTINGS_STRUCTS.get(spec.entry)
        if target is None:
            unknown.append(actor_id)
            continue
        _convert(spec.settings, target, source, f"actors.{actor_id}.settings")
        protocols = spec.settings.get("protocol_settings", {}) if target.endswith(":HostLinkSettings") else {}
        for protocol, table in protocols.items() if isinstance(protocols, dict) else ():
            if protocol in PROTOCOL_STRUCTS:
                prefix = f"actors.{actor_id}.settings.protocol_settings.{protocol}"
                _convert(table, PROTOCOL_STRUCTS[protocol], source, prefix)
        checked.append(actor_id)
    return checked, unknown


def _convert(data: Any, target: str, source: str, prefix: str) -> None:
    struct = pkgutil.resolve_name(target)
    try:
        msgspec.convert(dict(data) if isinstance(data, dict) else data, struct)
    except msgspec.ValidationError as err:
        raise validation_error(err, struct, source, prefix) from None
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err), source=source, key=prefix) from None

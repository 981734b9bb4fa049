"""Settings of the oVirt front-end (``[actors.transport.settings.ovirt]``). msgspec only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from concierge.errors import ConfigError


class OvirtSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Report cadences (OGA's defaults, which vdsm relies on) and the stale-command policy."""

    heartbeat_s: float = 5.0
    active_user_s: float = 10.0
    number_of_cpus_s: float = 60.0
    inventory_s: float = 120.0
    disks_usage_s: float = 300.0
    #: commands arriving this soon after the port opened may have sat in QEMU's queue for hours
    stale_window_s: float = 2.0
    #: per-request timeout towards monitor/sso/lifecycle (the heartbeat never waits on them)
    request_timeout_s: float = 4.0
    #: deadline for before_* lifecycle hooks; vdsm waits 10 s for ``completion``
    lifecycle_timeout_s: float = 8.0
    ignored_nics: tuple[str, ...] = ("docker0",)
    monitor_actor: str = "monitor"
    lifecycle_actor: str = "lifecycle"
    sso_actor: str = "sso"


def load_settings(raw: Mapping[str, Any] | OvirtSettings | None) -> OvirtSettings:
    """Validate the settings mapping; a bad key is a :class:`ConfigError` naming it."""
    if isinstance(raw, OvirtSettings):
        return raw
    try:
        return msgspec.convert(dict(raw or {}), OvirtSettings)
    except msgspec.ValidationError as err:
        raise ConfigError(str(err), key="actors.transport.settings.ovirt") from err

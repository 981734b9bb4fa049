"""``concierge reload`` / SIGHUP: apply a new configuration to a running supervisor.

Added actors start (or rest DORMANT when the guest does not need them), removed ones stop and
are forgotten once they have exited, changed ones restart with their new spec and settings; a
dormant changed actor is judged again (it may now be always-on, or have its channel).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from concierge.supervisor.state import State

if TYPE_CHECKING:
    from concierge.config.schema import AgentConfig
    from concierge.supervisor.children import Child
    from concierge.supervisor.core import Supervisor

log = logging.getLogger("concierge.supervisor.core")


def apply(sup: Supervisor, config: AgentConfig) -> dict[str, list[str]]:
    """Apply ``config``; returns the actor ids added, changed and removed."""
    old = sup.children
    sup.config = config
    fresh: dict[str, Child] = {}
    sup.children = fresh
    sup.apply_catalog(config, sup.extra_settings)
    added, changed, removed = [], [], []
    for actor_id, child in list(fresh.items()):
        previous = old.get(actor_id)
        if previous is None:
            added.append(actor_id)
            continue
        if previous.spec != child.spec or previous.settings != child.settings:
            changed.append(actor_id)
            previous.spec, previous.settings, previous.window = child.spec, child.settings, child.window
        fresh[actor_id] = previous
    for actor_id, previous in old.items():
        if actor_id not in fresh:
            removed.append(actor_id)
            fresh[actor_id] = previous
            sup.removed_ids.add(actor_id)
            sup.stop_child(previous)
            if previous.pid == 0:
                del fresh[actor_id]
    for actor_id in added:
        sup.start_or_rest(fresh[actor_id])
    for actor_id in changed:
        child = fresh[actor_id]
        if child.pid:
            child.restart_pending = True
            sup.stop_child(child, wanted=True)
        elif child.state == State.DORMANT:
            sup.start_or_rest(child)
        else:
            sup.start_child(child)
    log.info("config reloaded", extra={"event": "agent.reloaded"})
    return {"added": added, "changed": changed, "removed": removed}

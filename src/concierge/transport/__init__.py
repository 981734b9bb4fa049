"""Everything that moves bytes between the guest and its host: host channels and the
three wire protocols (qga, ovirt, spice). It stands on ``concierge.runtime`` and imports of
the actors only their message contracts (``concierge.actors.*.messages``), never a node.
"""

"""Everything that moves bytes: envelopes and sockets between processes, host channels and the
three wire protocols (qga, ovirt, spice). Must never import ``concierge.actors``.
"""

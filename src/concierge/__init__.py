"""Concierge: one Linux guest agent for QGA, oVirt and SPICE hosts.

Importing the package has no side effects; actors import only what they use.
"""

__version__ = "0.1.0"

"""The runtime every actor process and protocol front-end stands on: the envelope, the socket
layout, the node interface (``NodeContext``), the bridge that owns a process's sockets, the
service-node framework and the process runner.

Layers read top-down: ``supervisor`` → ``actors`` → ``transport`` → ``runtime``. Nothing here
imports ``concierge.actors``, ``concierge.transport`` or ``concierge.supervisor``.
"""

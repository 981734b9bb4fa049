"""``python -m concierge`` is the operator CLI, the same as the ``concierge`` script."""

from concierge.supervisor.cli import main

raise SystemExit(main())

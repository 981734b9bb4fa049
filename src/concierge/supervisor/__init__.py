"""The root supervisor (``concierge run``), its operator control socket and the CLI client."""

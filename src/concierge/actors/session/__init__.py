"""The session gateway (root) and the per-user session process that attaches to it."""

"""Lifecycle actor: power, suspend, filesystem quiesce with a lease, fstrim, time, vCPUs, memory."""

"""Registers the guestops fixtures (they live in guestops_harness, a uniquely named module)."""

from guestops_harness import log_capture, ours, qga, user

__all__ = ["log_capture", "ours", "qga", "user"]

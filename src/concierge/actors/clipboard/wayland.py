"""Wayland clipboard backend (placeholder replaced below)."""

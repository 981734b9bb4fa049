"""Clipboard actor: SPICE by-demand clipboard <-> X11 selections or Wayland data-control."""

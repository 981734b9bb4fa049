"""The input actor: the SPICE absolute tablet (uinput or a raw input_event file sink)."""

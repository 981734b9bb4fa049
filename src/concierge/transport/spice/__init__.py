"""The SPICE guest agent (vdagent) protocol front-end: framing, codec and host-facing logic."""

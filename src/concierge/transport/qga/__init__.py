"""The QEMU guest agent protocol front-end (byte-compatible with qemu-ga)."""

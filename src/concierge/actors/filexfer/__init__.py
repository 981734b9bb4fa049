"""File transfer actor: SPICE FILE_XFER_START/DATA/STATUS into the user's download directory."""

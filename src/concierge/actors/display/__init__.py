"""Display actor: applies the SPICE client's monitor layout in the user's session."""

"""Display effects actor: SPICE DISPLAY_CONFIG ("tone down the bling") applied and restored."""

"""Configuration: one TOML file plus a drop-in directory over built-in defaults."""

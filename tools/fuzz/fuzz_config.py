"""Fuzz target: the configuration loader (``config/loader.py``) on a hostile main file.

A configuration error must always come out as ``ConfigError`` naming the file (exit 78, never
restarted), never as a traceback: whatever the bytes, ``load_config`` returns or raises that.
The file is written to a private temporary directory once per input (the loader reads paths).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from concierge.config.loader import load_config
from concierge.errors import ConfigError

_DIR = Path(tempfile.mkdtemp(prefix="concierge-fuzz-config-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)
_MAIN = _DIR / "concierge.toml"
_DROPIN = _DIR / "concierge.d"
_DROPIN.mkdir()


def one_input(data: bytes) -> None:
    """Load ``data`` as the main file; anything but a config or a ConfigError is a finding."""
    _MAIN.write_bytes(data)
    try:
        load_config(_MAIN, _DROPIN, explicit=True)
    except ConfigError as err:
        if str(_MAIN) not in str(err) and "<defaults>" not in str(err):
            raise AssertionError(f"config error does not name the file: {err}") from err

"""Pure helpers of file transfer: keyfile parsing, safe file names, the XDG download dir.

No I/O except reading ``user-dirs.dirs``; must not import the node or any X11/D-Bus code.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path

MAX_NAME_BYTES = 255


class UnsafeNameError(ValueError):
    """The client's file name is empty, a path, or otherwise not a plain file name."""


def parse_keyfile(text: str | bytes) -> dict[str, str]:
    """Parse the ``[vdagent-file-xfer]`` group of a GKeyFile (the START payload)."""
    if isinstance(text, bytes):
        text = text.split(b"\0", 1)[0].decode("utf-8", errors="strict")
    else:
        text = text.split("\0", 1)[0]
    group = ""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
            continue
        if group == "vdagent-file-xfer" and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = _unescape(value.strip())
    return out


def _unescape(value: str) -> str:
    """Undo GKeyFile string escapes (\\s \\n \\t \\r \\\\)."""
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        nxt = next(chars, "")
        out.append({"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(nxt, "\\" + nxt))
    return "".join(out)


def safe_name(name: str) -> str:
    """Return ``name`` if it is one plain file name; raise :class:`UnsafeNameError` otherwise.

    Paths are refused rather than trimmed to their basename: a client sending ``../x`` is
    either buggy or hostile, and the user should see an error, not a file somewhere else.
    """
    if not name or name in (".", ".."):
        raise UnsafeNameError("empty or dot name")
    if "/" in name or "\\" in name:
        raise UnsafeNameError("name contains a path separator")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise UnsafeNameError("name contains control characters")
    if len(name.encode("utf-8", errors="surrogatepass")) > MAX_NAME_BYTES:
        raise UnsafeNameError("name too long")
    if name.strip() != name or name.startswith("-"):
        raise UnsafeNameError("name starts with a dash or has surrounding blanks")
    return name


def candidates(name: str, tries: int) -> Iterator[str]:
    """``name``, then ``stem (1).ext`` ... ``stem (tries).ext`` (never overwriting)."""
    yield name
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension, or a leading-dot name like ".bashrc"
        stem, dot, ext = name, "", ""
    for n in range(1, tries + 1):
        yield f"{stem} ({n}){dot}{ext}"


def download_dir(env: Mapping[str, str], configured: str = "") -> Path:
    """The configured dir, else ``XDG_DOWNLOAD_DIR`` from user-dirs.dirs, else ~/Downloads."""
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    if configured:
        return Path(os.path.expanduser(configured))
    config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    try:
        text = (config / "user-dirs.dirs").read_text(encoding="utf-8")
    except OSError:
        text = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("XDG_DOWNLOAD_DIR="):
            value = line.split("=", 1)[1].strip().strip('"')
            value = value.replace("$HOME", str(home))
            if value and os.path.isabs(value) and Path(value) != home:
                return Path(value)
    return home / "Downloads"

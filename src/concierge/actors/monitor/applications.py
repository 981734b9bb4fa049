"""Installed applications for oVirt's ``applications`` report: the dpkg status database and
the rpm sqlite database read directly (no shelling out per request), cached by the files'
identity (inode, size, mtime), filtered by oVirt-style name patterns (exact names or globs).

A Debian virtual package (``Provides``) matching a pattern reports as
``<virtual>-<provider version>``, as the oVirt agent's python-apt code did.
Must not import the node or transport code.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sqlite3
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

_GONE_STATES = frozenset({"not-installed", "config-files"})
_RPM_NAME, _RPM_VERSION, _RPM_RELEASE = 1000, 1001, 1002


@dataclass(frozen=True, slots=True)
class Package:
    """One installed package and the virtual names it provides."""

    name: str
    version: str
    provides: tuple[str, ...] = ()


def parse_dpkg_status(text: str) -> list[Package]:
    """Installed packages of a dpkg ``status`` file (continuation lines ignored)."""
    packages: list[Package] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if not line or line[0] in " \t":
                continue
            key, sep, value = line.partition(":")
            if sep:
                fields[key] = value.strip()
        name = fields.get("Package")
        status = fields.get("Status", "").split()
        if not name or len(status) < 3 or status[2] in _GONE_STATES:
            continue
        provides = tuple(
            part.split("(", 1)[0].strip() for part in fields.get("Provides", "").split(",") if part.strip()
        )
        packages.append(Package(name, fields.get("Version", ""), provides))
    return packages


def _header_strings(blob: bytes) -> dict[int, str]:
    """NAME/VERSION/RELEASE string tags of an rpm header blob (as stored in rpmdb.sqlite)."""
    count, _data_len = struct.unpack_from(">ii", blob, 0)
    store = 8 + 16 * count
    tags: dict[int, str] = {}
    for i in range(count):
        tag, kind, offset, _n = struct.unpack_from(">iiii", blob, 8 + 16 * i)
        if tag in (_RPM_NAME, _RPM_VERSION, _RPM_RELEASE) and kind == 6:  # RPM_STRING_TYPE
            end = blob.index(b"\0", store + offset)
            tags[tag] = blob[store + offset : end].decode("utf-8", "replace")
    return tags


def read_rpm_sqlite(path: str) -> list[Package]:
    """Installed packages from an rpm sqlite database (read-only, immutable snapshot)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
    try:
        rows = conn.execute("SELECT blob FROM Packages").fetchall()
    finally:
        conn.close()
    packages: list[Package] = []
    for (blob,) in rows:
        try:
            tags = _header_strings(bytes(blob))
        except (struct.error, ValueError):
            continue
        if _RPM_NAME in tags:
            version = f"{tags.get(_RPM_VERSION, '')}-{tags.get(_RPM_RELEASE, '')}"
            packages.append(Package(tags[_RPM_NAME], version))
    return packages


def _identity(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


@dataclass(slots=True)
class _Source:
    path: str
    identity: tuple[int, int, int] | None = None
    packages: list[Package] = field(default_factory=list)


class ApplicationsProbe:
    """Answers ``monitor.applications``; re-reads a database only after it changed."""

    def __init__(self, dpkg_status: str, rpmdb_dir: str) -> None:
        self._dpkg = _Source(dpkg_status)
        self._rpm = _Source(os.path.join(rpmdb_dir, "rpmdb.sqlite"))
        self._lock = threading.Lock()
        self._results: dict[tuple[object, ...], list[str]] = {}
        self.reads = 0

    def _refresh(self) -> bool:
        changed = False
        for source, reader in ((self._dpkg, _read_dpkg), (self._rpm, read_rpm_sqlite)):
            identity = _identity(source.path)
            if identity == source.identity:
                continue
            changed = True
            source.identity = identity
            source.packages = []
            if identity is not None:
                try:
                    source.packages = reader(source.path)
                except (OSError, sqlite3.Error):
                    source.packages = []
                self.reads += 1
        return changed

    def probe(self, names: Sequence[str]) -> list[str]:
        """``name-version`` of every installed package (or virtual name) matching ``names``."""
        with self._lock:
            if self._refresh():
                self._results.clear()
            key = tuple(names)
            cached = self._results.get(key)
            if cached is None:
                cached = self._match(names)
                self._results[key] = cached
            return list(cached)

    def _match(self, names: Sequence[str]) -> list[str]:
        if not names:
            return []
        pattern = re.compile("|".join(fnmatch.translate(n) for n in names))
        found: set[str] = set()
        for pkg in self._dpkg.packages + self._rpm.packages:
            if pattern.match(pkg.name):
                found.add(f"{pkg.name}-{pkg.version}")
            for virtual in pkg.provides:
                if pattern.match(virtual):
                    found.add(f"{virtual}-{pkg.version}")
        return sorted(found)


def _read_dpkg(path: str) -> list[Package]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return parse_dpkg_status(handle.read())

"""Installed applications for oVirt's ``applications`` report: the dpkg status database and
the rpm sqlite database read directly (no shelling out per request), cached by the files'
identity (inode, size, mtime), filtered by oVirt-style name patterns (exact names or globs).
Older rpm databases (BerkeleyDB ``Packages`` on RHEL <= 8, ndb ``Packages.db`` on SUSE) are
listed with ``rpm -qa`` instead, once per change of the database file.

A Debian virtual package (``Provides``) matching a pattern reports as
``<virtual>-<provider version>``, as the oVirt agent's python-apt code did.
Must not import the node or transport code.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_GONE_STATES = frozenset({"not-installed", "config-files"})
_RPM_NAME, _RPM_VERSION, _RPM_RELEASE = 1000, 1001, 1002
#: rpm databases only the rpm tool reads (ndb first: SUSE keeps a stale BerkeleyDB beside it)
RPM_TOOL_DATABASES = ("Packages.db", "Packages")
#: ``rpm -qa`` may wait for a lock held by a running transaction: give up after this long
RPM_QUERY_TIMEOUT_S = 30.0
#: the listing is read up to this many bytes (thousands of packages take ~100 kB)
RPM_QUERY_MAX_BYTES = 16 << 20


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


def read_rpm_tool(path: str) -> list[Package]:
    """Installed packages of the rpm database beside ``path``, listed by ``rpm -qa`` (for the
    BerkeleyDB and ndb formats); empty when rpm is not installed or does not answer in time."""
    rpm = shutil.which("rpm")
    if rpm is None:
        return []
    query = "%{NAME}\\t%{VERSION}-%{RELEASE}\\n"
    result = subprocess.run(
        [rpm, "--dbpath", os.path.dirname(path), "-qa", "--queryformat", query],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=RPM_QUERY_TIMEOUT_S,
        env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        check=False,
    )
    packages = []
    for line in result.stdout[:RPM_QUERY_MAX_BYTES].decode("utf-8", "replace").splitlines():
        name, tab, version = line.partition("\t")
        if tab and name:
            packages.append(Package(name, version))
    return packages


def rpm_database(rpmdb_dir: str) -> tuple[str, Callable[[str], list[Package]]]:
    """The rpm database file of ``rpmdb_dir`` and how to read it (sqlite ourselves, else rpm)."""
    sqlite = os.path.join(rpmdb_dir, "rpmdb.sqlite")
    if not os.path.exists(sqlite):
        for name in RPM_TOOL_DATABASES:
            older = os.path.join(rpmdb_dir, name)
            if os.path.exists(older):
                return older, read_rpm_tool
    return sqlite, read_rpm_sqlite


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
        self._rpmdb_dir = rpmdb_dir
        self._rpm = _Source(os.path.join(rpmdb_dir, "rpmdb.sqlite"))
        self._lock = threading.Lock()
        self._results: dict[tuple[object, ...], list[str]] = {}
        self.reads = 0

    def _refresh(self) -> bool:
        changed = False
        rpm_path, rpm_reader = rpm_database(self._rpmdb_dir)
        if rpm_path != self._rpm.path:
            self._rpm = _Source(rpm_path)
        for source, reader in ((self._dpkg, _read_dpkg), (self._rpm, rpm_reader)):
            identity = _identity(source.path)
            if identity == source.identity:
                continue
            changed = True
            source.identity = identity
            source.packages = []
            if identity is not None:
                try:
                    source.packages = reader(source.path)
                except (OSError, sqlite3.Error, subprocess.SubprocessError):
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

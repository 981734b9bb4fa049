"""oVirt's application list on rpm guests whose database is not rpmdb.sqlite: RHEL <= 8 keep a
BerkeleyDB ``Packages``, SUSE an ndb ``Packages.db``; those are listed with the real ``rpm -qa``.

The packages are real: built with rpmbuild, installed into a sqlite rpmdb with the real rpm,
and the BerkeleyDB database is written from those headers with Berkeley DB's own db_load (the
record layout rpm uses: instance number -> header blob, key 0 the last instance number)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from concierge.actors.monitor.applications import ApplicationsProbe, read_rpm_tool, rpm_database
from concierge.testing.peers import require_binary

SPEC = """Name: {name}
Version: {version}
Release: {release}
Summary: test package
License: MIT
BuildArch: noarch
%description
test
%files
"""


@pytest.fixture(scope="module")
def sqlite_rpmdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sqlite rpmdb holding two packages built and installed by the real rpm tools."""
    rpmbuild = require_binary("rpmbuild", "rpm")
    rpm = require_binary("rpm", "rpm")
    root = tmp_path_factory.mktemp("rpm")
    dbdir = root / "db"
    dbdir.mkdir()
    for name, version, release in (("concierge-test-hello", "1.2", "3"), ("ovirt-guest-agent-common", "1.0.16", "1")):
        spec = root / f"{name}.spec"
        spec.write_text(SPEC.format(name=name, version=version, release=release))
        subprocess.run(
            [rpmbuild, "--define", f"_topdir {root / 'build'}", "--define", f"_rpmdir {root}", "-bb", str(spec)],
            capture_output=True,
            check=True,
            timeout=120,
        )
    packages = sorted(str(p) for p in (root / "noarch").glob("*.rpm"))
    subprocess.run(
        [rpm, "--dbpath", str(dbdir), "-i", "--nodeps", "--justdb", *packages], capture_output=True, check=True
    )
    return dbdir


def berkeley_db(sqlite_dir: Path, target: Path) -> Path:
    """The same packages as a BerkeleyDB ``Packages`` hash database (RHEL <= 8)."""
    db_load = require_binary("db5.3_load", "db5.3-util")
    conn = sqlite3.connect(sqlite_dir / "rpmdb.sqlite")
    rows = conn.execute("SELECT hnum, blob FROM Packages").fetchall()
    conn.close()

    def printable(data: bytes) -> str:
        return " " + "".join(f"\\{byte:02x}" for byte in data)

    lines = ["VERSION=3", "format=print", "type=hash", "db_pagesize=4096", "HEADER=END"]
    lines += [printable((0).to_bytes(4, "little")), printable(max(h for h, _ in rows).to_bytes(4, "little"))]
    for hnum, blob in rows:
        lines += [printable(int(hnum).to_bytes(4, "little")), printable(bytes(blob))]
    target.mkdir()
    subprocess.run(
        [db_load, str(target / "Packages")], input="\n".join([*lines, "DATA=END", ""]), text=True, check=True
    )
    return target


def test_a_berkeley_db_rpm_database_is_listed_with_rpm(sqlite_rpmdb: Path, tmp_path: Path) -> None:
    bdb = berkeley_db(sqlite_rpmdb, tmp_path / "bdb")
    path, reader = rpm_database(str(bdb))
    assert path == str(bdb / "Packages") and reader is read_rpm_tool
    probe = ApplicationsProbe(str(tmp_path / "no-dpkg"), str(bdb))
    assert probe.probe(["ovirt-guest-agent*", "concierge-test-hello"]) == [
        "concierge-test-hello-1.2-3",
        "ovirt-guest-agent-common-1.0.16-1",
    ]
    reads = probe.reads
    probe.probe(["concierge-test-hello"])
    assert probe.reads == reads, "rpm runs again only when the database changed"


def test_sqlite_and_berkeley_db_list_the_same_packages(sqlite_rpmdb: Path, tmp_path: Path) -> None:
    bdb = berkeley_db(sqlite_rpmdb, tmp_path / "bdb")
    names = ["*"]
    from_sqlite = ApplicationsProbe(str(tmp_path / "none"), str(sqlite_rpmdb)).probe(names)
    assert from_sqlite == ApplicationsProbe(str(tmp_path / "none"), str(bdb)).probe(names)
    assert "concierge-test-hello-1.2-3" in from_sqlite


def test_ndb_is_handed_to_rpm_and_an_unreadable_database_lists_nothing(tmp_path: Path) -> None:
    """SUSE's ndb ``Packages.db`` goes to rpm too (Debian's rpm cannot read ndb: it answers with
    an error, and the probe reports no packages instead of failing)."""
    require_binary("rpm", "rpm")
    ndb = tmp_path / "ndb"
    ndb.mkdir()
    (ndb / "Packages.db").write_bytes(b"RpmP" + os.urandom(60))
    (ndb / "Packages").write_bytes(b"stale BerkeleyDB beside it")
    path, reader = rpm_database(str(ndb))
    assert path == str(ndb / "Packages.db") and reader is read_rpm_tool
    assert ApplicationsProbe(str(tmp_path / "none"), str(ndb)).probe(["*"]) == []


def test_no_rpm_tool_means_no_rpm_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "Packages").write_bytes(b"x")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert shutil.which("rpm") is None
    assert read_rpm_tool(str(tmp_path / "Packages")) == []

"""Build the Debian package with dpkg-buildpackage (tools/ship/build-deb.sh) and inspect it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from concierge.testing.peers import require, require_binary

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_binary("dpkg-buildpackage", "dpkg-dev")
    require(
        Path("/usr/share/perl5/Debian/Debhelper/Buildsystem/pybuild.pm").exists() or Path("/usr/bin/pybuild").exists(),
        "pybuild missing (apt install dh-python)",
    )
    out = tmp_path_factory.mktemp("deb")
    result = subprocess.run(
        [str(ROOT / "tools/ship/build-deb.sh"), str(out)], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (package,) = out.glob("concierge_*_*.deb")
    yield package


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.slow
def test_ship_deb_contents(deb: Path) -> None:
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    paths = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for expected in (
        "/usr/bin/concierge",
        "/lib/systemd/system/concierge.service",
        "/usr/lib/systemd/user/concierge-session.service",
        "/lib/udev/rules.d/60-concierge.rules",
        "/etc/xdg/autostart/concierge-session.desktop",
        "/etc/concierge/concierge.toml",
        "/etc/concierge/concierge.d/",
        "/etc/concierge/fsfreeze-hook",
        "/etc/concierge/fsfreeze-hook.d/README",
        "/usr/share/man/man1/concierge.1.gz",
        "/usr/share/man/man5/concierge.toml.5.gz",
        "/usr/share/bash-completion/completions/concierge",
        "/usr/share/doc/concierge/migration.md",
        "/usr/lib/python3/dist-packages/concierge/__init__.py",
    ):
        assert expected in paths, expected
    assert not [p for p in paths if "/concierge/testing" in p], "test fakes are not shipped"
    assert any(p.startswith("/usr/lib/concierge/vendor/msgspec/") for p in paths)
    assert any(p.startswith("/usr/lib/concierge/vendor/pykka/") for p in paths)
    assert not any("/tests/" in p or p.startswith("/usr/lib/python3/dist-packages/tests") for p in paths)


@pytest.mark.slow
def test_ship_deb_control(deb: Path, tmp_path: Path) -> None:
    agents = {"qemu-guest-agent", "spice-vdagent", "ovirt-guest-agent"}
    for name in ("Conflicts", "Replaces", "Provides"):
        assert {p.strip() for p in field(deb, name).split(",")} == agents
    depends = field(deb, "Depends")
    for dep in ("python3-zmq", "python3-psutil", "python3-serial", "python3-jeepney"):
        assert dep in depends
    assert "msgspec" not in depends and "pykka" not in depends  # vendored, not guessed
    subprocess.run(["dpkg-deb", "-e", str(deb), str(tmp_path / "ctl")], check=True)
    conffiles = (tmp_path / "ctl/conffiles").read_text().split()
    assert "/etc/concierge/concierge.toml" in conffiles
    assert "/etc/concierge/fsfreeze-hook" in conffiles
    postinst = (tmp_path / "ctl/postinst").read_text()
    assert "udevadm trigger --subsystem-match=virtio-ports" in postinst
    assert "concierge config import-qemu-ga" in postinst
    assert "deb-systemd-helper --user enable 'concierge-session.service'" in postinst
    # dh_installsystemd --no-start adds no stop on remove: debian/prerm does (issue 15 item 4)
    prerm = (tmp_path / "ctl/prerm").read_text()
    assert "deb-systemd-invoke stop concierge.service" in prerm
    assert "udevadm trigger --subsystem-match=virtio-ports" in (tmp_path / "ctl/postrm").read_text()


@pytest.mark.slow
def test_ship_deb_payload_imports_with_debian_python(deb: Path, tmp_path: Path) -> None:
    python = Path("/usr/bin/python3")
    require(python.exists(), "Debian python3 missing")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    site = tmp_path / "usr/lib/python3/dist-packages"
    vendor = tmp_path / "usr/lib/concierge/vendor"
    code = (
        "import concierge, msgspec, pykka, importlib.metadata as m; "
        "print(concierge.__version__, msgspec.__version__, m.version('pykka'), pykka.__file__)"
    )
    result = subprocess.run(
        [str(python), "-I", "-c", f"import sys; sys.path[:0]=[{str(site)!r},{str(vendor)!r}]; {code}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    version, _, pykka_version, pykka_file = result.stdout.split()
    assert pykka_file.startswith(str(vendor))
    assert version == field(deb, "Version")
    assert int(pykka_version.split(".")[0]) >= 4
    launcher = (tmp_path / "usr/bin/concierge").read_text()
    assert "/usr/lib/concierge/vendor" in launcher and "-m concierge" in launcher

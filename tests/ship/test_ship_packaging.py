"""Static checks of the shipped files: units, udev rules, autostart entry, man pages, completion,
freeze hook, default config. Each check uses the real tool where one exists."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import msgspec
import pytest

from concierge.testing.peers import require, require_binary

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "packaging"
DEFAULTS = ROOT / "src/concierge/config/defaults.toml"

# Noise from verifying a unit on a machine where the package is not installed.
_VERIFY_NOISE = re.compile(
    r"is not executable: No such file|Command 'man |Failed to lookup RuntimeDirectory|"
    r"Failed to initialize manager|^\s*$"
)


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def verify(path: Path, *extra: str, env: dict[str, str] | None = None) -> list[str]:
    tool = require_binary("systemd-analyze", "systemd")
    result = subprocess.run(
        [tool, *extra, "verify", str(path)], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if not _VERIFY_NOISE.search(line)]


def test_ship_system_unit_keys_and_verify() -> None:
    path = PKG / "systemd/concierge.service"
    svc = unit(path)["Service"]
    assert svc["Type"] == "notify"
    assert svc["Restart"] == "on-failure"
    assert svc["WatchdogSec"]
    assert svc["ExecStart"] == "/usr/bin/concierge run"
    assert set(svc["RestartPreventExitStatus"].split()) == {"64", "78"}
    assert svc["KillMode"] == "mixed"
    # Hardening that would break a host's requests (see the unit's header) must stay off.
    for forbidden in (
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "NoNewPrivileges",
        "ProtectClock",
        "ProtectKernelTunables",
        "User",
        "SystemCallArchitectures",
        "DynamicUser",
        "CapabilityBoundingSet",
    ):
        assert forbidden not in svc, forbidden
    conflicts = unit(path)["Unit"]["Conflicts"].split()
    assert "qemu-guest-agent.service" in conflicts and "spice-vdagentd.service" in conflicts
    assert verify(path) == []


def test_ship_verify_catches_a_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nTpye=notify\nExecStart=/bin/true\n")
    assert any("Tpye" in line for line in verify(bad))


def test_ship_user_unit(tmp_path: Path) -> None:
    path = PKG / "systemd/concierge-session.service"
    parsed = unit(path)
    assert parsed["Service"]["Restart"] == "on-failure"
    assert parsed["Service"]["ExecStart"] == "/usr/bin/concierge session"
    assert parsed["Install"]["WantedBy"] == "graphical-session.target"
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    assert verify(path, "--user", env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)}) == []


_UDEV_KEY = re.compile(
    r"(ACTION|SUBSYSTEM|KERNEL|ATTR\{[a-z_]+\}|ENV\{[A-Z_]+\}|TAG|OPTIONS)"
    r'(==|!=|\+=|=|:=)"([^"]*)"$'
)


def test_ship_udev_rules() -> None:
    path = PKG / "udev/60-concierge.rules"
    names = set()
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = dict.fromkeys(())
        for token in (t.strip() for t in line.split(",")):
            match = _UDEV_KEY.match(token)
            assert match, f"bad udev token {token!r} in {line!r}"
            fields[match.group(1) + match.group(2)] = match.group(3)
        assert fields["SUBSYSTEM=="] == "virtio-ports"
        assert fields["ACTION=="] == "add"
        assert fields["ENV{SYSTEMD_WANTS}+="] == "concierge.service"
        assert fields["TAG+="] == "systemd"
        names.add(fields["ATTR{name}=="])
    assert names == {"org.qemu.guest_agent.0", "com.redhat.spice.0", "ovirt-guest-agent.0", "com.redhat.rhevm.vdsm"}
    udevadm = require_binary("udevadm", "udev")
    probe = subprocess.run([udevadm, "verify", "--help"], capture_output=True, check=False)
    if probe.returncode == 0:  # systemd >= 253
        result = subprocess.run([udevadm, "verify", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_ship_autostart_entry() -> None:
    tool = require_binary("desktop-file-validate", "desktop-file-utils")
    path = PKG / "xdg/concierge-session.desktop"
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout
    assert "Exec=/usr/libexec/concierge/session-autostart" in path.read_text()
    subprocess.run(["sh", "-n", str(PKG / "libexec/session-autostart")], check=True)


@pytest.mark.parametrize("page", ["concierge.1", "concierge.toml.5"])
def test_ship_man_pages_render_cleanly(page: str) -> None:
    man = require_binary("man", "man-db")
    env = {**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"}
    result = subprocess.run(
        [man, "--warnings", "-l", str(PKG / "man" / page)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stderr == "", result.stderr
    assert "NAME" in result.stdout and "SEE ALSO" in result.stdout


def test_ship_man_page_lists_every_command() -> None:
    man = require_binary("man", "man-db")
    rendered = subprocess.run(
        [man, "-l", str(PKG / "man/concierge.1")],
        capture_output=True,
        text=True,
        env={**os.environ, "MANWIDTH": "80"},
        timeout=60,
        check=True,
    ).stdout
    section = rendered.split("COMMANDS", 1)[1].split("GLOBAL OPTIONS", 1)[0]
    entries = {
        w
        for line in section.splitlines()
        if line.startswith("       ") and not line.startswith("        ")
        for w in re.split(r"[ |\[\]]+", line.strip())
    }
    completion = (PKG / "completion/concierge").read_text()
    commands = re.search(r'local commands="([^"]+)"', completion)
    assert commands
    for command in commands.group(1).split():
        assert command in entries, command


def complete(line: str) -> list[str]:
    """COMPREPLY for ``line`` from the real bash-completion framework."""
    framework = Path("/usr/share/bash-completion/bash_completion")
    require(framework.exists(), "bash-completion not installed (apt install bash-completion)")
    words = line.split(" ")
    script = (
        f"source {framework}; source {PKG / 'completion/concierge'}; "
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}; "
        f"COMP_LINE={line!r}; COMP_POINT={len(line)}; _concierge; "
        "printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    result = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, "PATH": "/usr/bin:/bin"},
    )
    return sorted(w for w in result.stdout.splitlines() if w)


def test_ship_bash_completion() -> None:
    assert complete("concierge st") == ["start", "status", "stop"]
    assert complete("concierge run --log-format t") == ["text"]
    assert complete("concierge metrics --format p") == ["prometheus"]
    assert "--wait" in complete("concierge restart ")
    assert "monitor" in complete("concierge restart ")  # fallback list without a running agent
    assert complete("concierge config i") == ["import-qemu-ga"]
    assert complete("concierge status --j") == ["--json"], "global options after the subcommand too"
    assert complete("concierge doctor --j") == ["--json"]


def make_hook(directory: Path, name: str, log: Path, status: int = 0) -> Path:
    hook = directory / name
    hook.write_text(f'#!/bin/sh\necho "{name} $1" >> {log}\nexit {status}\n')
    hook.chmod(0o755)
    return hook


def run_hook(directory: Path, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PKG / "etc/fsfreeze-hook"), action],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "CONCIERGE_FSFREEZE_HOOK_DIR": str(directory)},
    )


def test_ship_fsfreeze_hook_order_and_skips(tmp_path: Path) -> None:
    hooks, log = tmp_path / "d", tmp_path / "log"
    hooks.mkdir()
    make_hook(hooks, "10-db", log)
    make_hook(hooks, "20-app", log)
    make_hook(hooks, "20-app~", log)
    make_hook(hooks, "30-x.dpkg-old", log)
    (hooks / "40-not-exec").write_text("#!/bin/sh\nexit 1\n")
    assert run_hook(hooks, "freeze").returncode == 0
    assert run_hook(hooks, "thaw").returncode == 0
    assert log.read_text().splitlines() == ["10-db freeze", "20-app freeze", "20-app thaw", "10-db thaw"]
    assert run_hook(hooks, "bogus").returncode == 2
    assert run_hook(tmp_path / "missing", "freeze").returncode == 0


def test_ship_fsfreeze_hook_failures(tmp_path: Path) -> None:
    hooks, log = tmp_path / "d", tmp_path / "log"
    hooks.mkdir()
    make_hook(hooks, "10-a", log)
    make_hook(hooks, "20-fails", log, status=3)
    make_hook(hooks, "30-c", log)
    result = run_hook(hooks, "freeze")
    assert result.returncode == 3 and "20-fails" in result.stderr
    assert log.read_text().splitlines() == ["10-a freeze", "20-fails freeze"]
    log.unlink()
    assert run_hook(hooks, "thaw").returncode == 3  # every thaw hook still ran
    assert log.read_text().splitlines() == ["30-c thaw", "20-fails thaw", "10-a thaw"]


def _uncomment(text: str) -> dict:
    return tomllib.loads(re.sub(r"^# ([A-Za-z0-9_]+ = )", r"\1", text, flags=re.M))


def _assert_covers_defaults(text: str) -> dict:
    assert tomllib.loads(text)["agent"] == {}  # every key is commented out
    defaults = tomllib.loads(DEFAULTS.read_text())
    parsed = _uncomment(text)
    for section in ("agent", "supervisor"):
        assert parsed[section] == defaults[section]
    for actor, spec in defaults["actors"].items():
        for key, value in spec.items():
            assert parsed["actors"][actor][key] == value
    return parsed


def test_ship_default_config_generated_covers_every_key() -> None:
    sys.path.insert(0, str(ROOT / "tools/ship"))
    try:
        import gen_config
    finally:
        sys.path.remove(str(ROOT / "tools/ship"))
    import msgspec

    text = gen_config.generate()
    parsed = _assert_covers_defaults(text)
    defaults = tomllib.loads(DEFAULTS.read_text())
    for actor, spec in defaults["actors"].items():
        cls = gen_config.settings_struct(spec["entry"])
        if cls is None:
            continue
        rendered = parsed["actors"][actor]["settings"]
        for field in msgspec.structs.fields(cls):
            nodefault = msgspec.NODEFAULT
            required = field.default is nodefault and field.default_factory is nodefault
            assert required or field.encode_name in rendered, (actor, field.name)


def test_ship_default_config_snapshot_parses_and_covers_defaults() -> None:
    _assert_covers_defaults((PKG / "etc/concierge.toml").read_text())


class ChannelSettings(msgspec.Struct):
    name: str


class DemoSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Demo settings.

    Second paragraph is not copied."""

    #: seconds between "probes"
    interval_s: float = 0.5
    names: list[str] = msgspec.field(default_factory=lambda: ["a", "b"])
    channels: list[ChannelSettings] = msgspec.field(default_factory=list)
    table: dict[str, int] = msgspec.field(default_factory=lambda: {"x": 1})
    flag: bool = False


def test_ship_config_generator_renders_settings_structs() -> None:
    sys.path.insert(0, str(ROOT / "tools/ship"))
    try:
        import gen_config
    finally:
        sys.path.remove(str(ROOT / "tools/ship"))

    assert gen_config._outermost([ChannelSettings, DemoSettings]) is DemoSettings
    lines = gen_config.render_settings("demo", DemoSettings)
    text = "\n".join(lines)
    assert lines[0] == "[actors.demo.settings]"
    assert "Second paragraph" not in text
    assert '## seconds between "probes"' in text
    parsed = _uncomment(text)["actors"]["demo"]["settings"]
    assert parsed == {"interval_s": 0.5, "names": ["a", "b"], "channels": [], "table": {"x": 1}, "flag": False}


def test_ship_debian_control_declares_the_replaced_agents() -> None:
    control = (ROOT / "debian/control").read_text()
    fields = {}
    for match in re.finditer(r"^(Conflicts|Replaces|Provides):((?:.*\n)(?:[ \t].*\n)*)", control, re.M):
        fields[match.group(1)] = {p.strip() for p in match.group(2).split(",") if p.strip()}
    expected = {"qemu-guest-agent", "spice-vdagent", "ovirt-guest-agent"}
    assert fields == {"Conflicts": expected, "Replaces": expected, "Provides": expected}

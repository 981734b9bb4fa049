"""Policy classes and the audit trail: denials look exactly like qemu-ga's disabled commands."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from guestops_harness import QgaSocketClient, audit_lines, make_ours, start_qemu_ga

from concierge.actors.guestops.messages import QGA_COMMANDS

pytestmark = pytest.mark.peer

CALLS: dict[str, dict[str, Any]] = {
    "guest-file-open": {"path": "/etc/hostname"},
    "guest-file-close": {"handle": 1000},
    "guest-file-read": {"handle": 1000},
    "guest-file-write": {"handle": 1000, "buf-b64": ""},
    "guest-file-seek": {"handle": 1000, "offset": 0, "whence": "set"},
    "guest-file-flush": {"handle": 1000},
    "guest-exec": {"path": "true"},
    "guest-exec-status": {"pid": 1},
    "guest-set-user-password": {"username": "root", "password": "eA==", "crypted": False},
    "guest-ssh-get-authorized-keys": {"username": "root"},
    "guest-ssh-add-authorized-keys": {"username": "root", "keys": []},
    "guest-ssh-remove-authorized-keys": {"username": "root", "keys": []},
}


def test_restricted_denies_like_blocked_qemu_ga(tmp_path: Path) -> None:
    from concierge.testing.peers import require

    require(os.geteuid() == 0, "needs root for qemu-ga")
    proc, sock = start_qemu_ga(tmp_path, "-b", ",".join(CALLS))
    qga = QgaSocketClient(sock)
    ctx, ours = make_ours(tmp_path / "state", restricted=True)
    try:
        for command, args in CALLS.items():
            theirs = qga.cmd(command, **args)
            assert theirs == {"error": {"class": "CommandNotFound", "desc": f"Command {command} has been disabled"}}
            assert ours.cmd(command, **args) == theirs, command
            # qemu-ga refuses before looking at the arguments; so do we
            assert ours.cmd(command) == qga.cmd(command), command
        reply = ctx.ask("policy.get", {})
        assert sorted(reply.body["disabled"]) == sorted(QGA_COMMANDS.values())
    finally:
        qga.close()
        ctx.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    denied = [r for r in audit_lines() if r["result"] == "denied"]
    assert {r["command"] for r in denied} >= set(CALLS)
    assert all(r["level"] == "warning" and r["code"] == "FORBIDDEN" for r in denied)


def test_class_switches_are_independent(tmp_path: Path) -> None:
    ctx, ours = make_ours(tmp_path / "state", exec={"allow": False})
    (tmp_path / "f").write_bytes(b"x")
    try:
        assert ours.cmd("guest-exec", path="true")["error"]["class"] == "CommandNotFound"
        assert ours.cmd("guest-exec-status", pid=1)["error"]["class"] == "CommandNotFound"
        assert ours.cmd("guest-file-open", path=str(tmp_path / "f")) == {"return": 1000}
        assert ctx.ask("policy.get", {}).body == {"disabled": ["guest-exec", "guest-exec-status"]}
    finally:
        ctx.close()


def test_exec_path_rules(tmp_path: Path) -> None:
    ctx, ours = make_ours(
        tmp_path / "state", exec={"allow_paths": ["/usr/bin/*", "/bin/*"], "deny_paths": ["*/sh", "*/dash", "*/bash"]}
    )
    try:
        assert "pid" in ours.cmd("guest-exec", path="true")["return"]
        for path in ("sh", "/bin/sh", "/usr/bin/../bin/sh", "/usr/sbin/useradd"):
            assert ours.cmd("guest-exec", path=path)["error"] == {
                "class": "CommandNotFound",
                "desc": "Command guest-exec has been disabled",
            }, path
    finally:
        ctx.close()


def test_account_user_rules(tmp_path: Path) -> None:
    ctx, ours = make_ours(tmp_path / "state", accounts={"deny_users": ["root", "adm*"]})
    try:
        for command in (
            "guest-set-user-password",
            "guest-ssh-get-authorized-keys",
            "guest-ssh-add-authorized-keys",
            "guest-ssh-remove-authorized-keys",
        ):
            args = dict(CALLS[command])
            for name in ("root", "admin"):
                args["username"] = name
                assert ours.cmd(command, **args)["error"]["class"] == "CommandNotFound", command
        # other users are not denied (this one does not exist: qemu-ga's lookup error)
        reply = ours.cmd("guest-ssh-get-authorized-keys", username="cgo-nobody-here")
        assert reply["error"] == {"class": "GenericError", "desc": "failed to lookup user 'cgo-nobody-here': Success"}
    finally:
        ctx.close()


def test_bad_settings_are_a_config_error(tmp_path: Path) -> None:
    from concierge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"actors\.guestops\.settings"):
        make_ours(tmp_path / "state", files={"allow": "yes please"})
    with pytest.raises(ConfigError, match=r"actors\.guestops\.settings"):
        make_ours(tmp_path / "state", restrictd=True)


def test_bad_bodies_answer_clearly(tmp_path: Path) -> None:
    ctx, ours = make_ours(tmp_path / "state")
    try:
        assert ours.cmd("guest-file-open")["error"]["desc"] == "Parameter 'path' is missing"
        assert ours.cmd("guest-file-read", handle="x")["error"]["desc"] == (
            "Invalid parameter type for 'handle', expected: integer"
        )
        assert ours.cmd("guest-exec", path="true", arg=[1])["error"]["desc"] == (
            "Invalid parameter type for 'arg', expected: array"
        )
        assert ctx.ask("file.open", ["not", "a", "dict"]).message == "arguments must be an object"
        for command, args in (
            ("guest-file-open", {"path": "/etc/passwd\0.txt"}),
            ("guest-exec", {"path": "true", "arg": ["a\0b"]}),
            ("guest-ssh-get-authorized-keys", {"username": "root\0x"}),
        ):
            assert "NUL" in ours.cmd(command, **args)["error"]["desc"], command
        # and the actor keeps answering
        assert ours.cmd("guest-exec-status", pid=1)["error"]["desc"] == "Invalid parameter 'pid'"
    finally:
        ctx.close()


def test_file_policy_judges_the_real_path_before_anything_is_created(tmp_path: Path) -> None:
    """A symlinked directory must not smuggle a create into a denied tree.

    The normalised path (``allowed/door/new``) matches no deny rule; only its real path
    (``secret/new``) does. The check after opening cannot help here: an ``O_CREAT`` open would
    already have made the file, so the refusal must come before it, and nothing may appear.
    """
    secret = tmp_path / "secret"
    secret.mkdir()
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "door").symlink_to(secret)
    ctx, ours = make_ours(tmp_path / "state", files={"deny_paths": [f"{secret}/*"]})
    disabled = {"class": "CommandNotFound", "desc": "Command guest-file-open has been disabled"}
    try:
        for mode in ("w", "a", "w+", "r"):
            reply = ours.cmd("guest-file-open", path=str(allowed / "door" / "new"), mode=mode)
            assert reply == {"error": disabled}, (mode, reply)
            assert not (secret / "new").exists(), mode
        # a dangling symlink into the denied tree: refused by policy, not by a failed open
        (allowed / "ghost").symlink_to(secret / "ghost")
        assert ours.cmd("guest-file-open", path=str(allowed / "ghost"), mode="w") == {"error": disabled}
        assert not (secret / "ghost").exists()
        # the allowed tree itself still works
        assert "return" in ours.cmd("guest-file-open", path=str(allowed / "plain"), mode="w")
    finally:
        ctx.close()

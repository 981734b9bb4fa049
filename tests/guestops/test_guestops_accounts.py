"""guest-ssh-*-authorized-keys and guest-set-user-password: differential against qemu-ga on a
throwaway user, symlink attacks, shell metacharacters, and no secret in any log line."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import warnings
from pathlib import Path
from typing import Any

import pytest
from guestops_harness import (
    SECRETS,
    OurClient,
    QgaSocketClient,
    all_log_text,
    audit_lines,
    make_ours,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

pytestmark = pytest.mark.peer

K1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyMaterialOneOneOneOneOneOneOneOne k1@test"
K2 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQKeyMaterialTwoTwoTwo k2@test"
K3 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyMaterialThreeThreeThree k3@test"
PASSWORD = "Pw$(touch /tmp/cgo-pwned)';`id`|&;<>\\\"*?~ \t!x"
SECRETS.extend([K1, K2, K3, "KeyMaterial", PASSWORD, base64.b64encode(PASSWORD.encode()).decode()])


def home(user: str) -> Path:
    return Path(os.path.expanduser(f"~{user}"))


def snapshot(user: str) -> Any:
    """Names, modes, owners and contents under ~/.ssh (the state a host's call leaves)."""
    ssh = home(user) / ".ssh"
    if not ssh.exists():
        return None
    st = ssh.lstat()
    files = {}
    for entry in sorted(ssh.iterdir()):
        est = entry.lstat()
        files[entry.name] = (oct(est.st_mode), est.st_uid, est.st_gid, entry.read_bytes())
    return (oct(st.st_mode), st.st_uid, st.st_gid, files)


def ssh_script(user: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("guest-ssh-get-authorized-keys", {"username": user}),
        ("guest-ssh-remove-authorized-keys", {"username": user, "keys": [K1]}),
        ("guest-ssh-add-authorized-keys", {"username": user, "keys": []}),
        ("guest-ssh-add-authorized-keys", {"username": user, "keys": [K1, K2, K1]}),
        ("guest-ssh-get-authorized-keys", {"username": user}),
        ("guest-ssh-add-authorized-keys", {"username": user, "keys": ["bad\nkey"]}),
        ("guest-ssh-add-authorized-keys", {"username": user, "keys": ["#comment"]}),
        ("guest-ssh-add-authorized-keys", {"username": user, "keys": ["", "  spaced  ", K2]}),
        ("guest-ssh-get-authorized-keys", {"username": user}),
        ("append", {"text": "\n# comment\n\n   \n" + K2 + "\n  leading\n"}),
        ("guest-ssh-get-authorized-keys", {"username": user}),
        ("guest-ssh-add-authorized-keys", {"username": user, "keys": [" leading  ", K3]}),
        ("guest-ssh-remove-authorized-keys", {"username": user, "keys": [K2, "  leading"]}),
        ("guest-ssh-get-authorized-keys", {"username": user}),
        ("guest-ssh-remove-authorized-keys", {"username": user, "keys": ["bad\nk"]}),
        ("guest-ssh-add-authorized-keys", {"username": user, "keys": [K2], "reset": True}),
        ("guest-ssh-get-authorized-keys", {"username": user}),
        ("guest-ssh-remove-authorized-keys", {"username": user, "keys": [K2]}),
        ("guest-ssh-get-authorized-keys", {"username": user}),
        ("guest-ssh-add-authorized-keys", {"username": user, "keys": [], "reset": True}),
        ("guest-ssh-get-authorized-keys", {"username": "cgo-no-such-user"}),
        ("guest-ssh-add-authorized-keys", {"username": "cgo-no-such-user", "keys": [K1]}),
        ("guest-ssh-remove-authorized-keys", {"username": "cgo-no-such-user", "keys": [K1]}),
    ]


def run_ssh(client: QgaSocketClient | OurClient, user: str) -> list[Any]:
    shutil.rmtree(home(user) / ".ssh", ignore_errors=True)
    out = []
    for cmd, args in ssh_script(user):
        if cmd == "append":
            with open(home(user) / ".ssh" / "authorized_keys", "a") as fh:
                fh.write(args["text"])
            continue
        out.append((cmd, client.cmd(cmd, **args), snapshot(user)))
    return out


def test_ssh_keys_match_qemu_ga(qga: QgaSocketClient, ours: OurClient, user: str) -> None:
    theirs = run_ssh(qga, user)
    mine = run_ssh(ours, user)
    for a, b in zip(theirs, mine, strict=True):
        assert a == b
    assert not any(K1 in line or "KeyMaterial" in line for line in all_log_text().splitlines())


def test_symlinked_ssh_dir_is_refused(qga: QgaSocketClient, ours: OurClient, user: str, tmp_path: Path) -> None:
    root_dir = tmp_path / "root-owned"
    root_dir.mkdir(mode=0o755)
    (home(user) / ".ssh").symlink_to(root_dir)
    reply = ours.cmd("guest-ssh-add-authorized-keys", username=user, keys=[K1])
    assert reply["error"]["class"] == "GenericError"
    assert "symbolic link" in reply["error"]["desc"]
    assert list(root_dir.iterdir()) == []  # nothing written into the root-owned directory
    assert "error" in ours.cmd("guest-ssh-get-authorized-keys", username=user)
    # the stock agent follows the link and plants a user-owned key file in root's directory
    assert qga.cmd("guest-ssh-add-authorized-keys", username=user, keys=[K1]) == {"return": {}}
    assert (root_dir / "authorized_keys").stat().st_uid != 0


def test_symlinked_authorized_keys_is_refused(qga: QgaSocketClient, ours: OurClient, user: str, tmp_path: Path) -> None:
    secret = tmp_path / "root-secret"
    secret.write_text("ROOT-ONLY-LINE\n")
    secret.chmod(0o644)
    ssh = home(user) / ".ssh"
    ssh.mkdir(mode=0o700)
    shutil.chown(ssh, user, user)
    (ssh / "authorized_keys").symlink_to(secret)
    for cmd, args in (
        ("guest-ssh-get-authorized-keys", {}),
        ("guest-ssh-add-authorized-keys", {"keys": [K1]}),
        ("guest-ssh-remove-authorized-keys", {"keys": ["ROOT-ONLY-LINE"]}),
    ):
        reply = ours.cmd(cmd, username=user, **args)
        assert "refusing a symbolic link" in reply["error"]["desc"], cmd
        assert "ROOT-ONLY-LINE" not in str(reply)
    assert secret.read_text() == "ROOT-ONLY-LINE\n"
    assert (ssh / "authorized_keys").is_symlink()
    # the stock agent reads the root-owned file through the link
    assert qga.cmd("guest-ssh-get-authorized-keys", username=user) == {"return": {"keys": ["ROOT-ONLY-LINE"]}}


def test_unreadable_target_is_unreachable_even_without_nofollow(ours: OurClient, user: str) -> None:
    # a hard-to-spot variant: authorized_keys is a hard link to a root-only file on the same fs
    ssh = home(user) / ".ssh"
    ssh.mkdir(mode=0o700)
    shutil.chown(ssh, user, user)
    target = home(user) / "root-only"
    target.write_text("SHADOW-LIKE\n")
    target.chmod(0o600)
    os.link(target, ssh / "authorized_keys")
    reply = ours.cmd("guest-ssh-get-authorized-keys", username=user)
    assert "Permission denied" in reply["error"]["desc"]  # we read as the user, not as root


def shadow_hash(user: str) -> str:
    for line in Path("/etc/shadow").read_text().splitlines():
        name, hashed = line.split(":")[:2]
        if name == user:
            return hashed
    raise KeyError(user)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_password_errors_match_qemu_ga(qga: QgaSocketClient, ours: OurClient, user: str) -> None:
    before = shadow_hash(user)
    cases = [
        {"username": user, "password": b64("a\nb"), "crypted": False},
        {"username": user, "password": b64("a\nb"), "crypted": True},
        {"username": f"{user}:x", "password": b64("pw"), "crypted": False},
        {"username": f"{user}\nroot", "password": b64("pw"), "crypted": False},
        {"username": "cgo-no-such-user", "password": b64("pw"), "crypted": False},
        {"username": user, "password": "!!", "crypted": False},
    ]
    for case in cases:
        assert qga.cmd("guest-set-user-password", **case) == ours.cmd("guest-set-user-password", **case), case
    assert shadow_hash(user) == before


def test_password_with_metacharacters(ours: OurClient, user: str) -> None:
    assert ours.cmd("guest-set-user-password", username=user, password=b64(PASSWORD), crypted=False) == {"return": {}}
    hashed = shadow_hash(user)
    assert crypt.crypt(PASSWORD, hashed) == hashed
    assert not os.path.exists("/tmp/cgo-pwned")
    crypted = crypt.crypt("other", crypt.mksalt(crypt.METHOD_SHA512))
    assert ours.cmd("guest-set-user-password", username=user, password=b64(crypted), crypted=True) == {"return": {}}
    assert shadow_hash(user) == crypted
    # a NUL would make qemu-ga set a truncated password; we refuse instead
    reply = ours.cmd(
        "guest-set-user-password", username=user, password=base64.b64encode(b"a\0rest").decode(), crypted=False
    )
    assert reply["error"]["desc"] == "forbidden characters in raw password"
    assert shadow_hash(user) == crypted
    records = [r for r in audit_lines() if r["command"] == "guest-set-user-password"]
    assert all(r["class"] == "accounts" for r in records)
    mine = [r["result"] for r in records if r["target"] == user]
    assert mine[-3:] == ["ok", "ok", "error"]
    text = all_log_text()
    assert PASSWORD not in text and b64(PASSWORD) not in text and crypted not in text


def test_password_only_on_stdin(tmp_path: Path, user: str) -> None:
    spy = tmp_path / "chpasswd-spy"
    record = tmp_path / "record"
    spy.write_text(
        f'#!/bin/sh\necho "$@" > {record}.argv\ncat > {record}.stdin\n'
        f"cat /proc/$$/environ | tr '\\0' '\\n' > {record}.env\n"
    )
    spy.chmod(0o755)
    ctx, client = make_ours(tmp_path / "state", chpasswd=str(spy))
    try:
        assert client.cmd("guest-set-user-password", username=user, password=b64(PASSWORD), crypted=True) == {
            "return": {}
        }
    finally:
        ctx.close()
    assert Path(f"{record}.argv").read_text() == "-e\n"
    assert Path(f"{record}.stdin").read_bytes() == f"{user}:{PASSWORD}\n".encode()
    assert PASSWORD not in Path(f"{record}.env").read_text()


def test_helper_runs_as_the_user(ours: OurClient, user: str) -> None:
    assert ours.cmd("guest-ssh-add-authorized-keys", username=user, keys=[K1]) == {"return": {}}
    ssh = home(user) / ".ssh"
    uid = home(user).stat().st_uid
    assert stat.S_IMODE(ssh.stat().st_mode) == 0o700 and ssh.stat().st_uid == uid
    keys = ssh / "authorized_keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600 and keys.stat().st_uid == uid


def test_no_secret_in_any_log_line() -> None:
    # runs after the other tests of this module (file order); the session fixture re-checks
    text = all_log_text()
    assert text, "log capture is empty"
    assert [s for s in SECRETS if s in text] == []


def test_chpasswd_missing_is_reported(tmp_path: Path, user: str) -> None:
    ctx, client = make_ours(tmp_path / "state", chpasswd=str(tmp_path / "nope"))
    try:
        reply = client.cmd("guest-set-user-password", username=user, password=b64("x"), crypted=False)
        assert "failed to create child process" in reply["error"]["desc"]
    finally:
        ctx.close()

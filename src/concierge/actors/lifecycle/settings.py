"""Settings of the lifecycle actor (``[actors.lifecycle.settings]``).

Every field has a safe default for a real guest; tests point the paths at private trees and
restrict the freezable set with ``only_mountpoints`` so nothing they did not create is touched.
Must import only stdlib and msgspec.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class LifecycleSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Typed view of ``actors.lifecycle.settings``."""

    #: seconds a freeze may last before the actor thaws on its own (guests suffer from ~120 s,
    #: the kernel's hung-task warning); 0 disables the lease (not recommended)
    freeze_lease_s: float = 60.0
    #: thaw when the QGA channel that asked for the freeze disconnects ...
    thaw_on_disconnect: bool = True
    #: ... and stays away this long (per-command clients such as Proxmox reconnect quickly)
    disconnect_grace_s: float = 5.0
    #: the qemu-ga compatible hook, called with freeze / thaw / freezefail; absent file = no hook
    fsfreeze_hook: str = "/etc/concierge/fsfreeze-hook"
    #: optional directory of hook scripts run directly (hook.d protocol), "" = none
    hook_dir: str = ""
    #: a hook running longer than this is killed and the freeze fails (freezefail path)
    hook_timeout_s: float = 60.0
    #: where the frozen marker lives; must survive an actor restart, should not survive a reboot
    state_dir: str = "/run/concierge-lifecycle"
    #: the mount table read to find freezable / trimmable filesystems
    mount_table: str = "/proc/self/mountinfo"
    #: when non-empty, only these mountpoints are ever frozen or trimmed (tests, cautious admins)
    only_mountpoints: list[str] = msgspec.field(default_factory=list)
    #: extra filesystem types never to freeze (overlay, tmpfs, FUSE, network fs are always skipped)
    skip_fstypes: list[str] = msgspec.field(default_factory=list)
    #: power backend: logind over D-Bus, classic binaries, or auto (logind when systemd runs)
    power_backend: Literal["auto", "logind", "binaries"] = "auto"
    #: D-Bus address of the system bus; "" = DBUS_SYSTEM_BUS_ADDRESS or the standard socket
    dbus_address: str = ""
    #: PATH used to find shutdown/poweroff/pm-utils/wall; "" = $PATH plus /sbin:/usr/sbin
    bin_path: str = ""
    #: root of sysfs (vCPUs, memory blocks, /sys/power/state)
    sysfs_root: str = "/sys"
    #: hwclock binary used by set-time, as qemu-ga (/sbin/hwclock -w / -s)
    hwclock: str = "/sbin/hwclock"
    #: sample the clocks every this many seconds to detect a step after resume / pause /
    #: migration and resync (chronyc makestep, else hwclock -s); 0 = off (qemu-ga has none)
    clock_watch_s: float = 0.0
    #: a jump larger than this between two samples is a step (the RTC has 1 s resolution)
    clock_step_threshold_s: float = 2.0
    #: how to resync after a step: "auto" = chronyc makestep when chrony answers, else the RTC
    clock_resync: Literal["auto", "rtc"] = "auto"
    #: seconds allowed for helper programs (hwclock, shutdown, pm-utils, wall)
    helper_timeout_s: float = 30.0

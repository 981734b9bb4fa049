"""Settings of the monitor actor (``[actors.monitor.settings]``). Standard library + msgspec only.

Every field has a default so an empty table is a working configuration.
"""

from __future__ import annotations

import msgspec

#: container and virtual interfaces that hosts rarely want to see (oVirt chokes on hundreds)
DEFAULT_INTERFACE_EXCLUDES: tuple[str, ...] = (
    "veth*",
    "docker*",
    "br-*",
    "cali*",
    "flannel*",
    "cni*",
    "virbr*",
    "vnet*",
    "tunl*",
    "weave*",
    "vxlan*",
    "kube-*",
    "lxcbr*",
    "lxc*",
    "genev_sys_*",
    "cilium_*",
    "lxd*",
    "podman*",
)

#: oVirt guest agent's ``applications_list`` default; fnmatch globs are accepted too
DEFAULT_APPLICATION_NAMES: tuple[str, ...] = (
    "kernel",
    "ovirt-guest-agent",
    "ovirt-guest-agent-common",
    "xorg-x11-drv-qxl",
    "linux-image",
    "xserver-xorg-video-qxl",
    "xf86-video-qxl",
    "kernel-desktop",
    "kernel-default",
    "kernel-trace",
    "kernel-vanilla",
    "kernel-debug",
    "kernel-ec2",
    "kernel-xen",
    "kernel-ppc64",
    "cloud-init",
    "qemu-guest-agent",
    "concierge-agent",
)


class MonitorSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Knobs of the monitor actor.

    Interfaces are filtered per *profile*: ``default`` (oVirt and other consumers) applies
    ``interface_excludes`` and ``interface_cap``; ``qga`` applies ``qga_interface_excludes`` and
    ``qga_interface_cap``, empty/0 by default because a drop-in qemu-ga user (libvirt
    ``domifaddr``, Proxmox, Nova) expects every interface exactly as qemu-ga lists them.
    """

    interface_excludes: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_INTERFACE_EXCLUDES))
    interface_cap: int = 64  # 0 = no cap
    qga_interface_excludes: list[str] = msgspec.field(default_factory=list)
    qga_interface_cap: int = 0
    #: deadline of one statvfs (or other hang-prone probe) before the mount is reported stuck
    probe_timeout_s: float = 1.0
    #: deadline of the FQDN lookup (DNS may hang); the last good answer is reused meanwhile
    fqdn_timeout_s: float = 2.0
    fqdn_cache_s: float = 120.0
    #: max threads stuck in hung probes; past that, hang-prone probes fail fast
    max_stuck_probes: int = 16
    utmp_path: str = "/var/run/utmp"
    #: "SYSTEM", "none" (never ask logind) or a D-Bus address
    logind_bus: str = "SYSTEM"
    logind_timeout_s: float = 2.0
    application_names: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_APPLICATION_NAMES))
    dpkg_status_path: str = "/var/lib/dpkg/status"
    rpmdb_dir: str = "/var/lib/rpm"
    os_release_paths: list[str] = msgspec.field(default_factory=lambda: ["/etc/os-release", "/usr/lib/os-release"])
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    #: mounts at or under these paths are the agent's own (systemd's StateDirectory= and
    #: RuntimeDirectory= bind mounts) and never reported; the agent's state_dir and systemd's
    #: $STATE_DIRECTORY/$RUNTIME_DIRECTORY are always added
    hidden_mounts: list[str] = msgspec.field(default_factory=lambda: ["/var/lib/concierge", "/run/concierge"])

"""Public API of the monitor actor (config id ``monitor``): request types and reply bodies.

Who sends: protocol front-ends (the QGA routes in ``transport/qga/commands/monitor.py``, the
oVirt helper) and operators. Who answers: :class:`concierge.actors.monitor.node.MonitorNode`.
Every request is answered from live data (cached only behind change detection, so a change is
visible at the next request). Suggested requester timeout: 10 s; hang-prone probes
(filesystems, disks, applications, users via logind, FQDN) carry their own shorter deadlines
and report what they skipped instead of blocking. Request bodies are ``None`` or ``{}`` unless
stated. Keys use snake_case; the QGA routes render them to qemu-ga's kebab-case shapes.

Must import only the standard library and msgspec.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

OSINFO = "monitor.osinfo"
"""-> dict with qemu-ga's osinfo keys (kernel-release, kernel-version, machine, id, name,
pretty-name, version, version-id, variant, variant-id); absent ones omitted."""

HOSTNAME = "monitor.hostname"
"""-> :class:`HostnameReply`. ``fqdn`` comes from a resolver lookup with a deadline; on
timeout the last good value (or the host name) is returned."""

TIMEZONE = "monitor.timezone"
"""-> :class:`TimezoneReply`."""

USERS = "monitor.users"
"""-> list of :class:`UserEntry`: unique users from utmp (earliest login, in order of first
appearance, as qemu-ga);
from logind over D-Bus when utmp is missing or empty."""

INTERFACES = "monitor.interfaces"
"""Body ``{"profile": "default"|"qga"}`` (default ``"default"``) -> :class:`InterfacesReply`.
The profile selects the exclude globs and cap from the settings."""

INTERFACES_QGA_LAYOUT = "monitor.interfaces/qga"
"""Not a request: the name under which ``answer.watch`` (``concierge.runtime.pushed``) pushes
the ``qga`` profile's interface layout: ``monitor.interfaces``'s body without ``stats`` and with
``net_dev``, the path of the counters file, which the receiver reads on every answer."""

ROUTES = "monitor.routes"
"""-> list of QGA ``GuestNetworkRoute`` dicts in snake_case (/proc/net/route, ipv6_route)."""

FILESYSTEMS = "monitor.filesystems"
"""-> :class:`FilesystemsReply`: mounts qemu-ga lists (block-backed, btrfs), in qemu-ga's
order. A mount whose statvfs exceeded the deadline is listed in ``timed_out`` (with no sizes)
and skipped until its stuck probe returns."""

DISKS = "monitor.disks"
"""-> list of :class:`DiskEntry` (qemu-ga's ``guest-get-disks`` set and order)."""

DISKSTATS = "monitor.diskstats"
"""-> list of :class:`DiskStatsEntry` (/proc/diskstats, every line)."""

CPUSTATS = "monitor.cpustats"
"""-> list of :class:`CpuStatsEntry` (/proc/stat per CPU, milliseconds)."""

LOAD = "monitor.load"
"""-> :class:`LoadReply`."""

CPUS = "monitor.cpus"
"""-> ``{"count": int}`` (online logical CPUs)."""

MEMORY = "monitor.memory"
"""-> :class:`MemoryReply`: raw bytes and cumulative counters; rates are the consumer's job."""

APPLICATIONS = "monitor.applications"
#: -> {"containers": [{id, names, image, command, status}]} (Docker/Podman API; [] without one)
CONTAINERS = "monitor.containers"
"""-> ``{"applications": ["name-version", ...]}`` for installed packages matching the
``application_names`` globs (dpkg status read directly, rpm if present; cached by mtime).
Body may carry ``{"names": [...]}`` to override the configured globs for one request."""


class HostnameReply(TypedDict):
    """``hostname``: gethostname(2); ``fqdn``: canonical name from the resolver."""

    hostname: str
    fqdn: str


class TimezoneReply(TypedDict):
    """``zone``/``offset``: qemu-ga semantics (abbreviation, seconds east of UTC including
    DST). ``iana`` (e.g. ``Europe/Prague``, "" if unknown) and ``standard_offset`` (seconds,
    DST ignored) serve oVirt's ``timezone`` message (which wants minutes: divide by 60)."""

    zone: str
    offset: int
    iana: str
    standard_offset: int


class UserEntry(TypedDict):
    """One logged-in user; ``login_time`` in seconds since the epoch (float)."""

    user: str
    login_time: float
    source: Literal["utmp", "logind"]


class IpAddress(TypedDict):
    """One address; IPv6 without a ``%scope`` suffix."""

    family: Literal["ipv4", "ipv6"]
    address: str
    prefix: int


class InterfaceStats(TypedDict):
    """Counters from /proc/net/dev."""

    rx_bytes: int
    rx_packets: int
    rx_errs: int
    rx_dropped: int
    tx_bytes: int
    tx_packets: int
    tx_errs: int
    tx_dropped: int


class Interface(TypedDict):
    """One interface in kernel (ifindex) order.

    ``hwaddr`` is formatted as qemu-ga does (first 6 bytes of SIOCGIFHWADDR, so loopback is
    ``00:00:00:00:00:00``); ``None`` when the ioctl fails. ``stats`` is ``None`` for an
    interface without addresses (qemu-ga omits statistics there).
    """

    name: str
    hwaddr: str | None
    addresses: list[IpAddress]
    stats: InterfaceStats | None


class InterfacesReply(TypedDict):
    """``excluded``: interfaces dropped by the exclude globs; ``truncated``: the cap cut."""

    interfaces: list[Interface]
    excluded: int
    truncated: bool


class PciAddress(TypedDict):
    """PCI controller address; every field -1 when the disk is not on PCI."""

    domain: int
    bus: int
    slot: int
    function: int


class Filesystem(TypedDict):
    """One mounted filesystem; sizes absent when statvfs failed or timed out. ``disks`` holds
    QGA ``GuestDiskAddress`` dicts with qemu-ga's kebab-case keys (``pci-controller``,
    ``bus-type``, ``bus``, ``target``, ``unit``, optional ``serial``, ``dev``, ``ccw-address``).
    ``name`` is the sysfs name of the device (``vda1``, ``dm-0``); in scope ``all`` network
    and FUSE mounts carry their source (``server:/export``) and no disks."""

    name: str
    mountpoint: str
    type: str
    used_bytes: NotRequired[int]
    total_bytes: NotRequired[int]
    total_bytes_privileged: NotRequired[int]
    disks: list[dict[str, object]]


class FilesystemsReply(TypedDict):
    """``timed_out``: mountpoints whose statvfs is stuck (reported, not waited for)."""

    filesystems: list[Filesystem]
    timed_out: list[str]


class DiskEntry(TypedDict):
    """QGA ``GuestDiskInfo`` in snake_case; ``address`` is a kebab-case QGA address dict;
    ``smart`` is ``{"type": "nvme", <NVMe SMART fields in snake_case>}``."""

    name: str
    partition: bool
    dependencies: NotRequired[list[str]]
    address: NotRequired[dict[str, object]]
    alias: NotRequired[str]
    smart: NotRequired[dict[str, object]]


class DiskStatsEntry(TypedDict):
    """``stats`` keys are qemu-ga's names in snake_case (read_sectors, ios_pgr, ...)."""

    name: str
    major: int
    minor: int
    stats: dict[str, int]


class CpuStatsEntry(TypedDict):
    """Per-CPU times in ms: cpu, user, nice, system, idle and, when the kernel has them,
    iowait, irq, softirq, steal, guest, guestnice."""

    cpu: int
    user: int
    nice: int
    system: int
    idle: int


class LoadReply(TypedDict):
    """getloadavg(3)."""

    load1m: float
    load5m: float
    load15m: float


class MemoryReply(TypedDict):
    """Bytes from /proc/meminfo, cumulative counters from /proc/vmstat (pswpin, pswpout,
    pgfault, pgmajfault). ``free`` is MemFree (oVirt's ``mem_unused``)."""

    total: int
    free: int
    available: int
    cached: int
    buffers: int
    swap_total: int
    swap_free: int
    swap_in: int
    swap_out: int
    pageflt: int
    majflt: int

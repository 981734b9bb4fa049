#!/bin/bash
# Build the minimal Debian 12 guest used by tools/vm/run-e2e, once, into tools/vm/cache/.
#
# debootstrap (minbase) into a directory, bake python3 + the agent's Python deps + the stock
# qemu-ga in (the guest has no network), then `mkfs.ext4 -d` (no loop mount, no root-only
# mount namespace tricks) and copy the guest's own kernel and initrd next to it so QEMU boots
# them with -kernel/-initrd. The result is keyed by a hash of this script and the guest/ files:
# change either and the next run rebuilds; otherwise it is reused.
#
# Reproducibility: fixed suite and mirror, fixed filesystem UUID and hash seed, file times clamped
# to SOURCE_DATE_EPOCH, and the exact package versions written to cache/manifest.txt.
# Needs root (debootstrap chroots), debootstrap, e2fsprogs, python3-pip (for the two wheels
# that bookworm does not package: msgspec and pykka >= 4).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${CONCIERGE_VM_CACHE:-$HERE/cache}"
MIRROR="${CONCIERGE_VM_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
SIZE="${CONCIERGE_VM_SIZE:-2G}"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1735689600}"   # 2025-01-01T00:00:00Z
PACKAGES=(
  systemd-sysv udev kmod initramfs-tools linux-image-amd64 e2fsprogs util-linux procps
  qemu-guest-agent
  python3 python3-cffi-backend python3-zmq python3-psutil python3-serial python3-jeepney python3-evdev python3-xlib
  dbus
)
VENDOR_WHEELS=(msgspec==0.23.0 pykka==4.5.0)

key="$( (cat "$0"; cat "$HERE"/guest/*) | sha256sum | cut -c1-16)"
if [[ -f "$CACHE/base.img" && "$(cat "$CACHE/key" 2>/dev/null)" == "$key" && "${1:-}" != "--force" ]]; then
  echo "image up to date: $CACHE/base.img (key $key)"
  exit 0
fi

[[ $EUID -eq 0 ]] || { echo "build-image.sh: needs root (debootstrap)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "apt install debootstrap" >&2; exit 2; }

start=$(date +%s)
mkdir -p "$CACHE"
root="$CACHE/rootfs"
rm -rf "$root" "$CACHE/base.img" "$CACHE/key"
echo "== debootstrap $SUITE minbase from $MIRROR"
mkdir -p "$CACHE/debs"
debootstrap --variant=minbase --cache-dir="$CACHE/debs" --include="$(IFS=,; echo "${PACKAGES[*]}")" \
  "$SUITE" "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
  || { tail -30 "$CACHE/debootstrap.log"; exit 1; }

echo "== configure guest"
echo concierge-e2e >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 concierge-e2e\n' >"$root/etc/hosts"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$root/etc/fstab"
# No password, login only on the serial console (debug aid; the VM has no network).
chroot "$root" passwd -d root >/dev/null
install -m 0755 "$HERE/guest/e2e-agent" "$root/usr/local/sbin/e2e-agent"
install -m 0644 "$HERE/guest/e2e-agent.service" "$root/etc/systemd/system/e2e-agent.service"
ln -sf /etc/systemd/system/e2e-agent.service "$root/etc/systemd/system/multi-user.target.wants/e2e-agent.service"
# Nothing periodic may wake up during a test.
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
            fstrim.timer systemd-tmpfiles-clean.timer; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
mkdir -p "$root/opt/concierge" "$root/mnt/e2e" "$root/etc/concierge/fsfreeze-hook.d"

echo "== vendor wheels: ${VENDOR_WHEELS[*]}"
python3 -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
  --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
  --target "$root/usr/lib/concierge/vendor" "${VENDOR_WHEELS[@]}"

echo "== kernel and a small initrd (only what boots a virtio disk: decompressing the default"
echo "   MODULES=most initrd costs ~10 s under software emulation)"
printf 'MODULES=list\nCOMPRESS=gzip\n' >"$root/etc/initramfs-tools/conf.d/e2e.conf"
printf '%s\n' virtio_pci virtio_blk virtio_console ext4 crc32c_generic >>"$root/etc/initramfs-tools/modules"
chroot "$root" update-initramfs -u -k all >/dev/null
cp "$root"/boot/vmlinuz-* "$CACHE/vmlinuz"
cp "$root"/boot/initrd.img-* "$CACHE/initrd.img"
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' >"$CACHE/manifest.txt"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

echo "== mkfs.ext4 -d ($SIZE)"
find "$root" -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} + 2>/dev/null || true
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -L concierge-root \
  -U 6b3c0c1e-5a0e-4c11-9f00-00000000c0c1 -E hash_seed=6b3c0c1e-5a0e-4c11-9f00-00000000c0c2 \
  -d "$root" "$CACHE/base.img" "$SIZE"
rm -rf "$root"
echo "$key" >"$CACHE/key"
echo "image built in $(( $(date +%s) - start )) s: $CACHE/base.img"

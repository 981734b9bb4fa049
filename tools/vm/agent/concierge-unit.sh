#!/bin/sh
# Guest side: run Concierge through the *packaged* units from the shared source tree, the way a
# .deb install would: the system unit (Type=notify, watchdog, Conflicts= with the stock agents)
# and the udev rule that starts it when a port appears. Only ExecStart is redirected to the
# 9p-shared source tree. Used by `run-e2e --agent concierge-unit`.
#
#   concierge-unit.sh                 # ExecStart = python3 -m concierge run
#   concierge-unit.sh 'CMD'           # stand-in ExecStart, e.g. the notify-standin.py beside
#                                     # this file (tests the unit and udev plumbing itself)
#
# With /mnt/e2e/concierge.deb (run-e2e --deb, the package tools/ship/build-deb.sh builds), the
# package itself is installed instead (`dpkg -i`): its own unit, udev rule and postinst start
# the agent, exactly as on a user's guest; nothing is redirected to the shared tree.
set -eu
DEB=/mnt/e2e/concierge.deb
if [ -f "$DEB" ]; then
    dpkg -i "$DEB"
    for _ in $(seq 60); do
        state=$(systemctl is-active concierge.service || true)
        [ "$state" = inactive ] || break
        sleep 0.5
    done
    echo "concierge-unit: installed $(dpkg-query -W -f '${Version}' concierge); concierge.service $state" >/dev/console
    exit 0
fi
SRC=/opt/concierge          # the tree under test (its src/ runs)
TOOLS=/opt/e2e-tools        # this checkout (packaging/), mounted by run-e2e's agent.sh
EXEC="${1:-/usr/bin/python3 -m concierge run}"
mkdir -p /run/systemd/system/concierge.service.d /run/udev/rules.d
install -m 0644 "$TOOLS/packaging/systemd/concierge.service" /run/systemd/system/concierge.service
{
    echo "[Service]"
    echo "Environment=PYTHONPATH=$SRC/src:/usr/lib/concierge/vendor"
    echo "ExecStart="
    echo "ExecStart=$EXEC"
    echo "ExecReload="
    echo "ExecReload=/usr/bin/python3 -m concierge reload"
} >/run/systemd/system/concierge.service.d/e2e.conf
install -m 0644 "$TOOLS/packaging/udev/60-concierge.rules" /run/udev/rules.d/60-concierge.rules
systemctl daemon-reload
udevadm control --reload-rules
# As the package's postinst does: re-announce the existing ports; the rule starts the service,
# and its Conflicts= stops qemu-guest-agent.service.
udevadm trigger --subsystem-match=virtio-ports --action=add
udevadm settle --timeout=30
for _ in $(seq 60); do
    state=$(systemctl is-active concierge.service || true)
    [ "$state" = inactive ] || break
    sleep 0.5
done
echo "concierge-unit: concierge.service $state after the udev trigger" >/dev/console

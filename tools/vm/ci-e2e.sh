#!/bin/bash
# CI entry for the real-VM end-to-end run: runs tools/vm/run-e2e when KVM works, and says
# clearly when and why it was skipped. CONCIERGE_E2E=tcg forces a run under software emulation;
# CONCIERGE_E2E=off skips it.
#
#   CONCIERGE_E2E=tcg tools/vm/ci-e2e.sh            # the whole plan (below), within a budget
#   tools/vm/ci-e2e.sh --agent concierge            # one run-e2e with these arguments
#
# The whole plan: build the guest image (needs the Debian mirror; cached by content), build the
# .deb (tools/ship/build-deb.sh), then two boots: `--agent concierge` (the checkout's
# `concierge run`) and `--agent concierge-unit --deb` (the package installed in the guest:
# unit, udev rule, fidelity, footprint and package lifecycle checks, qemu-ga as the reference),
# then tools/vm/run-libvirt-e2e (libvirt as the host) where libvirt is installed.
# Every step has its own timeout (generous for a busy 2-core machine under TCG) and the plan
# has a total budget (CONCIERGE_E2E_BUDGET_S, default 2700 s); run-e2e itself boots a second
# time when the first boot never reaches the agent. A failing step fails the script.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
mode="${CONCIERGE_E2E:-auto}"
if [ "$mode" = off ]; then
  echo "vm-e2e: SKIPPED (CONCIERGE_E2E=off)"; exit 0
fi
if [ "$mode" = auto ]; then
  if ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
    echo "vm-e2e: SKIPPED: no vmx/svm CPU flags, so /dev/kvm here cannot boot a guest usefully" \
         "(set CONCIERGE_E2E=tcg to run it under software emulation)"
    exit 0
  fi
  if ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
    echo "vm-e2e: SKIPPED: /dev/kvm not usable (set CONCIERGE_E2E=tcg to emulate)"; exit 0
  fi
fi
accel=kvm; [ "$mode" = tcg ] && accel=tcg
budget_s="${CONCIERGE_E2E_BUDGET_S:-2700}"
started=$(date +%s)
results=()

# step NAME TIMEOUT_S COMMAND...: run with a timeout cut to what is left of the budget
step() {
  local name=$1 limit=$2; shift 2
  local left=$(( budget_s - ($(date +%s) - started) ))
  (( left < limit )) && limit=$left
  if (( limit <= 0 )); then
    echo "vm-e2e: $name: FAIL (budget of ${budget_s} s spent)"; results+=("$name FAIL(budget)"); return 1
  fi
  local t0; t0=$(date +%s)
  echo "vm-e2e: $name (timeout ${limit} s): $*"
  timeout --kill-after=30 "$limit" "$@"
  local rc=$?
  local took=$(( $(date +%s) - t0 ))
  if [ $rc -eq 77 ]; then results+=("$name SKIPPED ${took}s"); return 77; fi
  if [ $rc -eq 124 ]; then results+=("$name FAIL(timeout) ${took}s"); return 1; fi
  if [ $rc -ne 0 ]; then results+=("$name FAIL ${took}s"); return 1; fi
  results+=("$name ok ${took}s")
}

summary() {
  echo "vm-e2e summary ($(( $(date +%s) - started )) s of a ${budget_s} s budget):"
  printf '  %s\n' "${results[@]}"
}

if [ $# -gt 0 ]; then
  step "run-e2e $*" 1800 "$PY" "$HERE/run-e2e" --accel "$accel" "$@"
  rc=$?
  summary
  if [ $rc -eq 77 ]; then echo "vm-e2e: SKIPPED: missing tools (see above)"; exit 0; fi
  exit $rc
fi

failed=0
step "image build" 1500 "$HERE/build-image.sh"
rc=$?
if [ $rc -eq 2 ]; then echo "vm-e2e: SKIPPED: cannot build the image here (see above)"; exit 0; fi
[ $rc -eq 0 ] || { summary; exit 1; }
debdir="$(mktemp -d /tmp/concierge-e2e-deb.XXXXXX)"
trap 'rm -rf "$debdir"' EXIT
step "deb build" 900 "$ROOT/tools/ship/build-deb.sh" "$debdir" || failed=1
step "run-e2e --agent concierge" 1200 "$PY" "$HERE/run-e2e" --accel "$accel" --agent concierge || failed=1
deb=$(ls "$debdir"/concierge_*.deb 2>/dev/null | head -1)
if [ -n "$deb" ]; then
  step "run-e2e --agent concierge-unit --deb" 1500 \
    "$PY" "$HERE/run-e2e" --accel "$accel" --agent concierge-unit --deb "$deb" || failed=1
fi
# libvirt as the host (virsh against stock qemu-ga, then against `concierge run`), when installed
if command -v virsh >/dev/null && { command -v libvirtd >/dev/null || [ -x /usr/sbin/libvirtd ]; }; then
  step "run-libvirt-e2e" 1200 "$PY" "$HERE/run-libvirt-e2e" || failed=1
else
  results+=("run-libvirt-e2e SKIPPED (libvirt-daemon-system not installed)")
fi
summary
exit $failed

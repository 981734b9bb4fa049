#!/bin/bash
# CI entry for the real-VM end-to-end run (for .ci/run): runs tools/vm/run-e2e when KVM works,
# and says clearly when and why it was skipped. CONCIERGE_E2E=tcg forces a run under software
# emulation (about 2-4 min per boot on 2 busy cores, plus a one-time image build of ~7 min);
# CONCIERGE_E2E=off skips it. Extra arguments go to run-e2e (e.g. --agent concierge-unit).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PY="${PYTHON:-$HERE/../../.venv/bin/python}"
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
"$PY" "$HERE/run-e2e" --accel "$accel" "$@"
rc=$?
if [ $rc -eq 77 ]; then echo "vm-e2e: SKIPPED: missing tools (see above)"; exit 0; fi
exit $rc

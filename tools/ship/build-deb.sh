#!/bin/bash
# Build the Debian package from the working tree, in a scratch copy, into dist/.
#
#   tools/ship/build-deb.sh            # dpkg-buildpackage -us -uc -b in a copy of the tree
#
# The copy keeps the repository's parent directory clean (dpkg-buildpackage writes its results
# next to the source tree). Build dependencies: debhelper dh-python pybuild-plugin-pyproject
# python3-all python3-hatchling python3-pip (tools/ci/apt-ship.txt). The two wheels Debian 12
# lacks are taken from debian/vendor-wheels/ when present (offline), else fetched from PyPI.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${1:-$ROOT/dist}"
WORK="$(mktemp -d /tmp/concierge-deb.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/src" "$OUT"
# Tracked and new (not ignored) files only: no caches, no VM images.
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard) |
  (cd "$ROOT" && xargs -0 cp --parents -t "$WORK/src" 2>/dev/null || true)
[ -d "$ROOT/debian/vendor-wheels" ] && cp -r "$ROOT/debian/vendor-wheels" "$WORK/src/debian/"
start=$(date +%s)
# Debian tools must see Debian's python3, not a developer's pyenv/venv first on PATH.
(cd "$WORK/src" && env PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b) >"$WORK/build.log" 2>&1 || {
  tail -40 "$WORK/build.log"; echo "build-deb: dpkg-buildpackage failed" >&2; exit 1; }
cp "$WORK"/*.deb "$OUT"/
cp "$WORK/build.log" "$OUT/build.log"
echo "built in $(( $(date +%s) - start )) s:"
ls -1 "$OUT"/*.deb

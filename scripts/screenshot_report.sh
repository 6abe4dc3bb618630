#!/usr/bin/env bash
# Development loop for the HTML report: render REPORT.html in headless Chromium at 1280 px
# and write a full-page PNG to look at. Needs Debian's chromium (apt-get install chromium);
# the flags keep it off this machine's closed network.
set -euo pipefail
report="${1:?usage: scripts/screenshot_report.sh REPORT.html OUT.png [HEIGHT]}"
out="${2:?usage: scripts/screenshot_report.sh REPORT.html OUT.png [HEIGHT]}"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --window-size="1280,${3:-6000}" \
    --screenshot="$out" "file://$(realpath "$report")" 2>/dev/null
echo "wrote $out"

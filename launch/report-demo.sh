#!/usr/bin/env bash
# Builds the report of the demo model and renders it with headless Chromium (from Debian), so the page
# can be checked by looking at the screenshot.
#   launch/report-demo.sh [OUTPUT_DIR] [TABLE_JSON]
# OUTPUT_DIR (default demo-output/report) receives index.html and report.png. TABLE_JSON is the .json of
# `qmamba table` (launch/demo.sh writes demo-output/table.json); it is used when given or present.
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/environment.sh
out="${1:-demo-output/report}"
table="${2:-demo-output/table.json}"
if ! command -v chromium-headless-shell >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell
fi
swift build -c release
mkdir -p "$out"
Q=.build/release/qmamba
if [ ! -f "$out/q-w4a4.json" ]; then
  mpirun -np 2 $Q calibrate --checkpoint demo/vim_digits.pth --data demo/data/calib --method qmamba \
    --w-bits 4 --a-bits 4 --output "$out/q-w4a4.json"
fi
extra=()
[ -f "$table" ] && extra=(--table "$table")
mpirun -np 2 $Q report --checkpoint demo/vim_digits.pth --quant "$out/q-w4a4.json" --data demo/data/calib \
  --output "$out" "${extra[@]}"
page="$(cd "$out" && pwd)/index.html"
chromium-headless-shell --no-sandbox --disable-gpu --hide-scrollbars --window-size=1800,3000 \
  --screenshot="$out/report.png" "file://$page" 2>/dev/null
test -s "$out/report.png"
echo "report: $out/index.html, screenshot: $out/report.png"

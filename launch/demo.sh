#!/usr/bin/env bash
# The demo entry point: installs missing packages, builds in release mode, and runs `qmamba table` on the
# demo model shipped in demo/ (a Vim trained on handwritten digits) over a 2-rank MPI job.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/install-packages.sh
source launch/environment.sh
swift build -c release 2>&1 | grep -E "error|warning: |Build complete" | tail -3
out=${QMAMBA_DEMO_OUTPUT:-demo-output}
mkdir -p "$out"
# Always a fresh table: progress an interrupted demo left would otherwise be refused (or, with --resume, reused).
rm -rf "$out/table.progress"
mpirun -np "${QMAMBA_DEMO_RANKS:-2}" .build/release/qmamba table --checkpoint demo/vim_digits.pth \
  --calib demo/data/calib --val demo/data/val --settings W8A8,W4A4 \
  --methods minmax,percentile,mse,mse+ltsq,mse+tgq,qmamba --output "$out/table"
echo "results: $out/table.md (Markdown), $out/table.json (every count)"

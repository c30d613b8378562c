#!/usr/bin/env bash
# The long fuzz run: every fuzz suite (weight files, pickles, images) with CASES cases each,
# from seed SEED (CI runs seed 0 with a few thousand cases). Prints one summary line per suite.
#   launch/fuzz.sh [CASES] [SEED]      e.g. launch/fuzz.sh 100000 7
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/environment.sh
export QMAMBA_FUZZ_CASES="${1:-50000}" QMAMBA_FUZZ_SEED="${2:-1}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
swift test --filter 'FuzzTests|ImageFuzzTests' 2>&1 | tee "$log" | grep -E '^fuzz |✘|error:' || true
grep -q 'Test run with .* passed' "$log"


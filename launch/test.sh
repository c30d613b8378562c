#!/usr/bin/env bash
# The test entry point (README, CI): install packages, build, run every test, then one real
# 2-rank MPI job of the built binary.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/install-packages.sh
source launch/environment.sh

log=$(mktemp)
status=0
swift test 2>&1 | tee "$log" || status=$?

echo "== mpirun -np 2 smoke job"
out=$(mktemp -d)
mpirun -np 2 .build/debug/qmamba forward --checkpoint Tests/Fixtures/vim-official/vim_micro.pth \
  --input Tests/Fixtures/vim-official/vim_micro_input.npy --output "$out/logits.npy" || status=1
[ -s "$out/logits.npy" ] || { echo "the 2-rank job wrote no logits"; status=1; }

summary=$(grep -E "Test run with [0-9]+ tests" "$log" | tail -1 || true)
tests=$(sed -E 's/.*with ([0-9]+) tests.*/\1/' <<<"$summary")
failed=$(grep -cE '^✘ Test ".*" (with [0-9]+ test cases? )?failed' "$log" || true)
skipped=$(grep -c "^SKIPPED:" "$log" || true)
[ -n "$tests" ] || { tests=0; status=1; }
[ "$skipped" -eq 0 ] || echo "note: $skipped test part(s) skipped, see the SKIPPED lines above"
if [ "$status" -ne 0 ]; then
  [ "$failed" -gt 0 ] || failed=1
  echo "tests: $((tests > failed ? tests - failed : 0)) passed, $failed failed"
  exit 1
fi
echo "tests: $tests passed, 0 failed"

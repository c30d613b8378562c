#!/usr/bin/env bash
# The demo entry point: installs missing packages, builds in release mode, and runs qmamba on the
# model shipped in the repository under a 2-rank MPI job.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/install-packages.sh
source launch/environment.sh
swift build -c release 2>&1 | grep -E "error|warning: |Compiling|Build complete" | tail -3
bin=.build/release/qmamba
model=Tests/Fixtures/vim-official/vim_micro.pth
input=Tests/Fixtures/vim-official/vim_micro_input.npy
out=${QMAMBA_DEMO_OUTPUT:-demo-output}
mkdir -p "$out"
echo "== the model"
$bin inspect --checkpoint "$model"
echo "== logits of 4 images on 2 ranks"
mpirun -np 2 $bin forward --checkpoint "$model" --input "$input" --output "$out/logits.npy"
echo "results: $out/logits.npy"

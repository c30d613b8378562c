#!/usr/bin/env bash
# Runs qmamba under mpirun with the project's environment (one BLAS thread per rank, root allowed in
# containers, oversubscription allowed). Usage: launch/qmamba-mpirun.sh RANKS [mpirun options --] qmamba-arguments…
#   launch/qmamba-mpirun.sh 8 --hostfile hostfiles/two-nodes -- evaluate --checkpoint vim_t.pth --data /data/val
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
source "$here/launch/environment.sh"
ranks=$1
shift
mpi_options=()
if [[ " $* " == *" -- "* ]]; then
  while [ "$1" != "--" ]; do mpi_options+=("$1"); shift; done
  shift
fi
exec mpirun -np "$ranks" "${mpi_options[@]}" -x OPENBLAS_NUM_THREADS "${QMAMBA_BINARY:-$here/.build/release/qmamba}" "$@"

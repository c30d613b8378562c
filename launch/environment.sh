# Sourced by the launch scripts: the environment every qmamba rank runs with.
# One BLAS thread per rank: ranks are the parallelism (Docs/PERFORMANCE.md).
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
# Open MPI refuses to start as root unless told it is intended (containers, CI).
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# More ranks than cores is allowed (small machines, tests).
export OMPI_MCA_rmaps_base_oversubscribe="${OMPI_MCA_rmaps_base_oversubscribe:-1}"

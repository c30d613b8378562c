#ifndef CMPI_SHIM_H
#define CMPI_SHIM_H
#include <mpi.h>
/* Open MPI defines its handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_IN_PLACE, ...) as macros that
   take the address of a library global; Swift cannot import such macros, so each one is exposed through
   a static inline accessor. */
static inline MPI_Comm cmpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype cmpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype cmpi_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype cmpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype cmpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype cmpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op cmpi_sum(void) { return MPI_SUM; }
static inline MPI_Op cmpi_min(void) { return MPI_MIN; }
static inline MPI_Op cmpi_max(void) { return MPI_MAX; }
static inline void *cmpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Errhandler cmpi_errors_return(void) { return MPI_ERRORS_RETURN; }
#endif

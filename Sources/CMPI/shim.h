// MPI's C API for Swift. The predefined handles are macros Swift cannot import (in Open MPI,
// casts of the addresses of global objects), so they are given here as inline functions.
#ifndef REMAT_CMPI_SHIM_H
#define REMAT_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm remat_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype remat_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype remat_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype remat_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype remat_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op remat_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op remat_mpi_max(void) { return MPI_MAX; }
static inline void *remat_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *remat_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Request remat_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Errhandler remat_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int remat_mpi_success(void) { return MPI_SUCCESS; }
static inline int remat_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int remat_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
#endif

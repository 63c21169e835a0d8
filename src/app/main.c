/* main.c - the stemdefect executable: MPI start-up and shut-down around sd_app_main. */
#include <mpi.h>

#include "app.h"

int main(int argc, char **argv) {
  if (MPI_Init(&argc, &argv) != MPI_SUCCESS) return 1;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int code = sd_app_main(MPI_COMM_WORLD, argc, argv);
  MPI_Finalize();
  return code;
}

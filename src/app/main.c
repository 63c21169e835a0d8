/* main.c - the stemdefect executable: MPI start-up and shut-down around sd_app_main. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

/* Open MPI's UCX layer probes the network devices in MPI_Init: 0.2 s of the 0.45 s start-up
 * of every command on a workstation. On one node ob1 with its shared-memory transport moves
 * the data as fast. So when every rank is on one node (mpirun: OMPI_COMM_WORLD_LOCAL_SIZE
 * equals OMPI_COMM_WORLD_SIZE; srun: one node in the step; or a program started without
 * either) and the user chose no transport (OMPI_MCA_pml unset), ob1 is used. All ranks see
 * the same variables, so they all choose alike. A pml chosen in an mca-params.conf file is
 * overridden too (the environment wins there); SD_MPI_DEFAULTS=0 turns this off. */
static void single_node_defaults(void) {
  const char *off = getenv("SD_MPI_DEFAULTS");
  if ((off && !strcmp(off, "0")) || getenv("OMPI_MCA_pml"))
    return;
  const char *ws = getenv("OMPI_COMM_WORLD_SIZE"), *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  const char *sn = getenv("SLURM_STEP_NUM_NODES");
  int one_node;
  if (ws && ls)
    one_node = !strcmp(ws, ls);
  else if (getenv("SLURM_STEP_ID") || getenv("SLURM_STEPID"))
    one_node = sn && !strcmp(sn, "1");
  else
    one_node = !ws && !getenv("PMIX_RANK") && !getenv("PMI_RANK");
  if (one_node)
    setenv("OMPI_MCA_pml", "ob1", 0);
}

int main(int argc, char **argv) {
  single_node_defaults();
  if (MPI_Init(&argc, &argv) != MPI_SUCCESS)
    return 1;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int code = sd_app_main(MPI_COMM_WORLD, argc, argv);
  MPI_Finalize();
  return code;
}

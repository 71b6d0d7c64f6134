"""The topology table on recorded launcher environments: MPICH, Open MPI, PMIx, Slurm.

The MPICH records come from `mpirun -hosts nodeA,nodeB -np 4` on the simulated nodes (the live
check is tests/test_multinode.py::test_groups_of_two_stay_within_a_node); the others are the
variables those launchers document (Open MPI's environment-variable page, Slurm's srun page,
OpenPMIx's fork setup), trimmed to what the table reads plus a few decoys.
"""

from __future__ import annotations

import pytest

from hpwf.workflow._topology import placement

MPICH_NODE_B_RANK_3 = {  # hydra, ssh launcher, round-robin over two nodes
    "MPI_LOCALNRANKS": "2", "MPI_LOCALRANKID": "1", "PMI_FD": "6", "PMI_HOSTNAME": "nodeB",
    "PMI_RANK": "3", "PMI_SIZE": "4",
}
OPENMPI_RANK_5 = {  # mpirun -np 8 --map-by ppr:4:node, second node
    "OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
    "OMPI_COMM_WORLD_LOCAL_SIZE": "4", "OMPI_COMM_WORLD_NODE_RANK": "3", "OMPI_UNIVERSE_SIZE": "8",
    "PMIX_RANK": "5", "PMIX_NAMESPACE": "prterun-login-1234@1", "PMIX_HOSTNAME": "cn02",
}
SLURM_TASK = {  # srun -N 3 -n 5 (2, 2, 1 tasks): global task 3 is the second on node 1
    "SLURM_PROCID": "3", "SLURM_NTASKS": "5", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
    "SLURM_TASKS_PER_NODE": "2(x2),1", "SLURM_STEP_TASKS_PER_NODE": "2(x2),1", "SLURMD_NODENAME": "cn02",
    "SLURM_JOB_NODELIST": "cn[01-03]",
}
SRUN_PMIX = {  # srun --mpi=pmix: PMIx's rank; local rank and node from the same step's Slurm variables
    **SLURM_TASK, "PMIX_RANK": "3", "PMIX_NAMESPACE": "slurm.pmix.77.0", "PMIX_SERVER_URI41": "pmix-server.1",
}
SRUN_PMI2 = {**SLURM_TASK, "PMI_RANK": "3", "PMI_SIZE": "5", "PMI_FD": "4", "PMI_JOBID": "77.0"}
HYDRA_IN_SBATCH_RANK_6 = {  # mpirun inside a batch script: the batch shell's SLURM_PROCID=0 is inherited
    "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NTASKS": "1",
    "SLURM_TASKS_PER_NODE": "4(x2)", "SLURMD_NODENAME": "cn01",
    "PMI_RANK": "6", "PMI_SIZE": "8", "MPI_LOCALRANKID": "2", "MPI_LOCALNRANKS": "4", "PMI_HOSTNAME": "cn02",
}


@pytest.mark.parametrize("env, expected", [
    (MPICH_NODE_B_RANK_3, ("mpich", 3, 4, 1, 2, "nodeB", None)),
    (OPENMPI_RANK_5, ("openmpi", 5, 8, 1, 4, "cn02", None)),
    (SLURM_TASK, ("slurm", 3, 5, 1, 2, "cn02", 1)),
    (SRUN_PMIX, ("pmix", 3, 5, 1, 2, "cn02", 1)),
    (SRUN_PMI2, ("mpich", 3, 5, 1, 2, "cn02", 1)),
    (HYDRA_IN_SBATCH_RANK_6, ("mpich", 6, 8, 2, 4, "cn02", None)),
], ids=["mpich", "openmpi", "slurm", "srun-pmix", "srun-pmi2", "mpich-inside-sbatch"])
def test_recorded_environments(env: dict[str, str], expected: tuple) -> None:  # type: ignore[type-arg]
    p = placement(env)
    assert (p.source, p.rank, p.size, p.local_rank, p.local_size, p.node, p.node_index) == expected


def test_node_rank_of_open_mpi_is_not_the_local_rank() -> None:
    """OMPI_COMM_WORLD_NODE_RANK counts every job's processes on the node: not used."""
    env = {**OPENMPI_RANK_5, "OMPI_COMM_WORLD_NODE_RANK": "7"}
    assert placement(env).local_rank == 1


def test_last_node_of_an_uneven_slurm_step() -> None:
    env = {**SLURM_TASK, "SLURM_PROCID": "4", "SLURM_LOCALID": "0", "SLURM_NODEID": "2", "SLURMD_NODENAME": "cn03"}
    p = placement(env)
    assert (p.rank, p.local_rank, p.local_size, p.node, p.node_index) == (4, 0, 1, "cn03", 2)


def test_pmix_alone_leaves_unknown_fields_at_their_defaults() -> None:
    p = placement({"PMIX_RANK": "2", "PMIX_HOSTNAME": "cn07"})
    assert (p.source, p.rank, p.local_rank, p.local_size, p.node, p.node_index) == ("pmix", 2, 0, 1, "cn07", None)

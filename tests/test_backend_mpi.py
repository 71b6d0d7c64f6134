"""The MPI agents (a real mpirun job whose ranks form per-trial groups) pass the conformance suite."""

from __future__ import annotations

import pytest

from hpwf.backends.mpi import MPIJobBackend
from tests.conformance import BackendConformance


class TestMPIJobBackend(BackendConformance):
    lost_with_a_rank = BackendConformance.slots  # MPICH ends the whole job when one rank dies
    @pytest.fixture
    def backend(self):
        return lambda slots: MPIJobBackend(ranks=slots)

"""The embedded default backend (a real distributed.LocalCluster) passes the conformance suite."""

from __future__ import annotations

import pytest

from hpwf.backends.local import LocalBackend
from tests.conformance import BackendConformance


class TestLocalBackend(BackendConformance):
    @pytest.fixture
    def backend(self):
        return lambda slots: LocalBackend(workers=slots)

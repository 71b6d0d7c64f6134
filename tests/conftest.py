import logging

import pytest


@pytest.fixture(autouse=True)
def _quiet_dask_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="distributed")

"""One Spark session for the whole test run (``spark_session`` is cached per process)."""

from __future__ import annotations

from typing import Any

import pytest

from experiments.batch.engines import spark_session


@pytest.fixture(scope="session")
def spark() -> Any:
    return spark_session("local[2]")

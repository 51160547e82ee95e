"""Shared pytest fixtures: the data directory (DIKE_DATA_DIR) and its require/skip policy."""
import os
from pathlib import Path
import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    "The benchmark data directory; with DIKE_REQUIRE_DATA=1 a missing one is a failure, not a skip."
    d = os.environ.get("DIKE_DATA_DIR")
    if d and Path(d).is_dir():
        return Path(d)
    if os.environ.get("DIKE_REQUIRE_DATA") == "1":
        pytest.fail(f"DIKE_REQUIRE_DATA=1 but DIKE_DATA_DIR={d!r} is not a directory")
    pytest.skip("no benchmark data: set DIKE_DATA_DIR to a copy of shared/data")
